"""``mallscore groups train``: behaviour groups (k-means on income x score), a spec of its own."""

from __future__ import annotations

import typer

from mallscore.cli._common import cli_errors, emit_json, settings_from
from mallscore.cli.app import app

groups_app = typer.Typer(
    help="Behaviour groups: k-means on annual income x spending score (customers with a known score).",
    no_args_is_help=True,
)
app.add_typer(groups_app, name="groups")


def parse_k(value: str) -> int | None:
    """``auto`` -> None, else a whole number (UsageError otherwise)."""
    from mallscore.errors import UsageError

    if value.strip().lower() == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--k must be a whole number or auto, got {value!r}") from None


@groups_app.command("train")
@cli_errors
def groups_train(
    ctx: typer.Context,
    k: str = typer.Option(
        "auto", "--k", metavar="K|auto", help="Number of groups, or auto (best mean silhouette, 2..10)."
    ),
    no_promote: bool = typer.Option(False, "--no-promote", help="Register the model but leave the champion as it is."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Fit k-means on features_behaviour, export to ONNX (parity-gated), register and promote it.

    Exit 2 for a bad --k, 65 for a k outside 2..10, 66 without enough customers with a known
    score, 78 when the ONNX export fails its parity gate (nothing registered) or the models
    folder is not writable.
    """
    from mallscore.registry import check_writable

    chosen = parse_k(k)
    settings = settings_from(ctx)
    check_writable(settings.models_dir)
    from mallscore.groups.job import read_features, train_groups
    from mallscore.warehouse import open_warehouse

    with open_warehouse(settings, read_only=True) as con:  # read, then release: never block the nightly writer
        ids, X, population = read_features(con)
    result = train_groups(settings, X, ids, population, k=chosen, promote=not no_promote)
    if json_out:
        emit_json(result)
        return
    typer.echo(f"groups model {result['version']}: k = {result['k']} ({result['choice']['reason']})")
    for g in result["groups"]:
        c = g["centre"]
        typer.echo(
            f"  {g['name']:<28} {g['size']:>7} customers  income {c['annual_income']:.1f} k$, score {c['spending_score']:.1f}"
        )
    typer.echo(
        f"promoted: {'yes' if result['promoted'] else 'no'} ({result['promotion_reason']}); report {result['report']}"
    )


def card_lines(card: dict, is_champion: bool) -> list[str]:
    """A groups card as the lines `models show` prints."""
    best = card["silhouette"][str(card["k"])]
    lines = [
        f"version      {card['version']}{'  (champion)' if is_champion else ''}",
        f"spec         {card['spec']}  features: {', '.join(f['name'] for f in card['features'])}",
        f"created      {card['created_at']}  git {card.get('git_commit') or '-'}",
        f"data         {card['training_data']['rows']} rows of {card['feature_table']}",
        f"k            {card['k']} ({card['choice']['reason']})",
        f"silhouette   {best['mean']:.3f} +- {best['std']:.3f}",
    ]
    for g in card["groups"]:
        c = g["centre"]
        lines.append(
            f"group        {g['name']}: {g['size']} customers, income {c['annual_income']:.1f}, score {c['spending_score']:.1f}"
        )
    lines.append(f"onnx         sha256 {card['onnx']['sha256'][:16]}..., {card['onnx']['mismatches']} mismatches")
    return lines
