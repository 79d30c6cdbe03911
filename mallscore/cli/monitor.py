"""Model monitoring on the command line: ``mallscore drift``, one run's drift against the training population."""

from __future__ import annotations

import typer

from mallscore.cli._common import cli_errors, emit_json, settings_from
from mallscore.cli.app import app


def drift_table(result: dict) -> list[str]:
    """The lines ``mallscore drift`` prints for one run."""
    lines = [f"run {result['run_id']}", f"{'feature':<24} {'psi':>8} {'status':<14} {'rows':>12}"]
    for d in result["features"]:
        psi = f"{d['psi']:.4f}" if d["psi"] is not None else "-"
        lines.append(f"{d['feature']:<24} {psi:>8} {d['status']:<14} {d['rows']:>12,}")
    return lines


@app.command()
@cli_errors
def drift(
    ctx: typer.Context,
    run: str | None = typer.Option(
        None, "--run", metavar="RUN_ID", help="The run to show (default: the latest run that scored rows)."
    ),
    json_out: bool = typer.Option(
        False, "--json", help='Print {"run_id", "features": [{feature, psi, status, rows}]}.'
    ),
) -> None:
    """Drift of one scoring run against the model's training population: PSI per feature and for p_high_spender.

    Status ok below MALLSCORE_DRIFT_WARN (0.1), warn below MALLSCORE_DRIFT_ALERT
    (0.25), alert above; 'too few rows' for small runs, 'no reference' for models
    trained before reference distributions existed. Read-only; exit 66 when the
    run (or any run with drift) is not in the warehouse.
    """
    from mallscore.monitoring import read_drift

    result = read_drift(settings_from(ctx), run)
    if json_out:
        emit_json(result)
        return
    for line in drift_table(result):
        typer.echo(line)
