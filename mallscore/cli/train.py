"""Commands that train and manage models: ``train`` and ``models list|show|promote``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer

from mallscore.cli._common import cli_errors, emit_json, is_terminal, settings_from
from mallscore.cli.app import app

models_app = typer.Typer(
    help="List, inspect and promote trained models (rollback = promote an older version).",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator:
    """A progress callback drawing rich bars on stderr, or a silent one when not a terminal."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    tasks: dict[str, int] = {}
    with Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _render_train(result: dict) -> None:
    typer.echo(
        f"model {result['model_version']} (spec {result['spec']}, {result['n_configs']} configurations, "
        f"budget {result['budget']})"
    )
    if result["leakage"]:
        typer.echo(
            f"WARNING: leaking feature(s) {', '.join(result['leakage'])}: metrics are not valid for new customers"
        )
    nested = result["nested_cv_roc_auc"]
    typer.echo(
        f"nested-CV ROC-AUC {nested['mean']:.3f} +- {nested['std']:.3f}; "
        f"holdout accuracy {result['test']['accuracy']:.3f}, ROC-AUC {result['test']['roc_auc']:.3f}"
    )
    for metric, v in result["cv"].items():
        typer.echo(f"  cv {metric:<9} {v['mean']:.3f} +- {v['std']:.3f}")
    typer.echo(f"threshold {result['threshold']:.4f}; best {result['best_params']}")
    onnx = result["onnx"]
    typer.echo(
        f"onnx parity: max |dp| {onnx['max_abs_diff']:.2g}, {onnx['label_flips']} label flips "
        f"over {onnx['rows_checked']} rows"
    )
    typer.echo(f"promoted: {'yes' if result['promoted'] else 'no'} ({result['promotion_reason']})")
    typer.echo(f"report: {result['report']}")


@app.command()
@cli_errors
def train(
    ctx: typer.Context,
    spec: str = typer.Option(
        "default",
        "--spec",
        metavar="NAME",
        help="Model spec: default (new customers) or seed (the notebook's leaky setup).",
    ),
    allow_leakage: bool = typer.Option(
        False,
        "--allow-leakage",
        help="Train even if a feature leaks the label; the model is flagged and never promoted automatically.",
    ),
    no_promote: bool = typer.Option(False, "--no-promote", help="Register the model but leave the champion as it is."),
    budget: str = typer.Option(
        "full",
        "--budget",
        metavar="NAME",
        help="full (>= 200 configurations, 5x5 CV) or quick (small grid: smoke tests only).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Tune, evaluate, export to ONNX (parity-gated) and register a model; promote it if it is not worse.

    Exit 65 when a feature leaks the label (without --allow-leakage) or the data cannot
    be trained on, 66 when there is no training data, 78 when the ONNX export fails
    its parity gate (nothing is registered) or the models folder is not writable
    (checked before training starts).
    """
    from mallscore.registry import check_writable
    from mallscore.specs import get_spec

    model_spec = get_spec(spec)  # a fixed list: checked before scikit-learn is even imported
    settings = settings_from(ctx)
    check_writable(settings.models_dir)  # fail in a second, not after minutes of training
    from mallscore.training import get_budget, read_training_set, train_frame
    from mallscore.warehouse import open_warehouse

    chosen = get_budget(budget)
    # read, then release the warehouse: training takes a while and must not block the nightly writer
    with open_warehouse(settings, read_only=True) as con:
        frame = read_training_set(con, model_spec)
    with _progress(is_terminal() and not json_out) as progress:
        result = train_frame(
            frame,
            settings,
            spec,
            allow_leakage=allow_leakage,
            promote=not no_promote,
            progress=progress,
            budget=chosen,
            announce=lambda line: typer.echo(line, err=True),
        )
    if json_out:
        emit_json(result)
    else:
        _render_train(result)


@models_app.command("list")
@cli_errors
def models_list(
    ctx: typer.Context,
    spec: str | None = typer.Option(None, "--spec", metavar="NAME", help="Only this spec."),
    json_out: bool = typer.Option(False, "--json", help="Print the models as a JSON list."),
) -> None:
    """Registered models, newest first, with their champion flag and integrity status."""
    from mallscore.registry import list_models

    rows = list_models(settings_from(ctx).models_dir, spec)
    if json_out:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no models yet: run `mallscore train`")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("", "spec", "nested AUC", "leakage", "status")
    table.add_column("version", no_wrap=True)
    for r in rows:
        nested = r.get("nested_cv_roc_auc") or {}
        auc = f"{nested['mean']:.3f} +- {nested['std']:.3f}" if nested.get("mean") is not None else "-"
        table.add_row(
            "*" if r["champion"] else "",
            r["spec"],
            auc,
            ", ".join(r.get("leakage") or []) or "-",
            r["status"] if r["status"] == "ok" else "INVALID",
            r["version"],
        )
    Console().print(table)


@models_app.command("show")
@cli_errors
def models_show(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="Model version (see `mallscore models list`)."),
    json_out: bool = typer.Option(False, "--json", help="Print the whole (verified) card as JSON."),
) -> None:
    """Show a model's card after checking its sha256 sums (exit 78 if tampered)."""
    from mallscore.registry import card_path, champion, verify_graph, verify_model

    settings = settings_from(ctx)
    card, onnx_bytes = verify_model(card_path(settings.models_dir, version))
    verify_graph(card, onnx_bytes)
    if json_out:
        emit_json(card)
        return
    try:
        if card.get("kind") == "groups":
            from mallscore.cli.groups import card_lines as groups_card_lines

            lines = groups_card_lines(card, champion(settings.models_dir, card["spec"]) == version)
        else:
            lines = _card_lines(card, champion(settings.models_dir, card["spec"]) == version)
    except (KeyError, TypeError) as exc:
        from mallscore.errors import ConfigError

        raise ConfigError(
            f"card of {version} lacks the field {exc} (not written by `mallscore train`); use --json"
        ) from None
    lines.append(f"card         {card_path(settings.models_dir, version)}")
    for line in lines:
        typer.echo(line)


def _card_lines(card: dict, is_champion: bool) -> list[str]:
    """A card as the lines `models show` prints."""
    from mallscore.compare import describe

    nested = card["metrics"]["nested_cv_roc_auc"]
    version = card["version"]
    return [
        f"version      {version}{'  (champion)' if is_champion else ''}",
        f"spec         {card['spec']}  features: {', '.join(f['name'] for f in card['features'])}",
        f"created      {card['created_at']}  git {card.get('git_commit') or '-'}",
        f"data         {card['training_data']['rows']} rows, {card['training_data']['positives']} positives, "
        f"fingerprint {card['training_data']['fingerprint'][:16]}",
        f"nested AUC   {nested['mean']:.3f} +- {nested['std']:.3f}",
        f"threshold    {card['threshold']:.4f}",
        f"leakage      {', '.join(card['leakage']['flagged']) or 'none'}  promotable: {card['promotable']}",
        f"best params  {card['best_params']}  ({card['n_configs']} configurations)",
        "tiers        "
        + ", ".join(f"{t['name']} p>={t['min_p']:.3f} lift {t['lift'] or 0:.2f}" for t in card["tiers"]),
        f"onnx         sha256 {card['onnx']['sha256'][:16]}..., max |dp| {card['onnx']['max_abs_diff']:.2g}",
    ] + ([f"comparison   {describe(card['comparison'])}"] if card.get("comparison") else [])


@models_app.command("promote")
@cli_errors
def models_promote(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="Model version to make champion of its spec."),
    allow_leakage: bool = typer.Option(
        False, "--allow-leakage", help="Promote even a model trained with leaking features."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print {spec, version, previous} as JSON."),
) -> None:
    """Make VERSION the champion of its spec (verified first). Rollback = promote an older version.

    First shows what it would change: the comparison with the current champion on the
    warehouse's customers (skipped, with the reason, when it cannot run), recorded in promotions.log.
    """
    from mallscore.compare import describe, promotion_comparison
    from mallscore.registry import promote

    settings = settings_from(ctx)
    comparison = promotion_comparison(settings, version)
    if comparison is not None:
        typer.echo(describe(comparison), err=json_out)
    result = promote(settings.models_dir, version, allow_flagged=allow_leakage, comparison=comparison)
    result["comparison"] = comparison
    if json_out:
        emit_json(result)
    else:
        typer.echo(f"champion of {result['spec']}: {result['version']} (was {result['previous'] or 'none'})")


def _render_compare(result: dict) -> None:
    from mallscore.compare import headline, headline_text

    typer.echo(headline_text(headline(result)))
    names = list(result["matrix"])
    width = max(len(n) for n in names) + 2
    typer.echo("champion \\ challenger".ljust(width + 10) + "".join(n.rjust(width) for n in names))
    for row in names:
        typer.echo(row.ljust(width + 10) + "".join(str(result["matrix"][row][col]).rjust(width) for col in names))
    typer.echo(
        f"{result['rejected']} customer(s) rejected by the contract (not compared); "
        f"{result['labelled']} labelled, base rate "
        + ("-" if result["base_rate"] is None else f"{result['base_rate']:.3f}")
    )
    for model in ("champion", "challenger"):
        typer.echo(f"{model} {result[model]} on labelled customers:")
        for t in result["tiers"][model]:
            if t["observed_rate"] is None:
                typer.echo(f"  {t['name']:<13} n {t['n']:>9}")
                continue
            typer.echo(
                f"  {t['name']:<13} n {t['n']:>9}  rate {t['observed_rate']:.3f} "
                f"[{t['rate_ci_low']:.3f}, {t['rate_ci_high']:.3f}]  lift "
                + ("-" if t["lift"] is None else f"{t['lift']:.2f} [{t['lift_ci_low']:.2f}, {t['lift_ci_high']:.2f}]")
            )


@models_app.command("compare")
@cli_errors
def models_compare(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="The challenger's model version."),
    against: str | None = typer.Option(
        None, "--against", metavar="VERSION", help="Compare with this version (default: the champion of its spec)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the comparison as one JSON object."),
) -> None:
    """Score the warehouse's customers with both models: segment transitions, label flips, lift per tier.

    Read-only (waits for the warehouse lock like `status`); no scikit-learn. Exit 2 when the
    two models take different features, 78 when a model is missing or tampered, 66 without a warehouse.
    """
    from mallscore.compare import compare, load_pair

    settings = settings_from(ctx)
    champion, challenger = load_pair(settings, version, against)
    result = compare(settings, champion, challenger)
    if json_out:
        emit_json(result)
    else:
        _render_compare(result)
