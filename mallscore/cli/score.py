"""Commands that score customers and report runs: score, rescore, runs.

``rescore`` is on the fast path (one customer must beat ``import sklearn``):
nothing here imports pandas, rich or scikit-learn unless it has to draw a
progress bar on a terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

from mallscore.cli._common import cli_errors, emit_json, fail, is_terminal, settings_from
from mallscore.cli.app import app
from mallscore.monitoring import describe

_LOCK_HELP = "Seconds to wait for the warehouse lock before exit 75 [env MALLSCORE_LOCK_TIMEOUT; default 60]."


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("scoring", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update


def summary_line(run: dict) -> str:
    """The one line a run prints at the end."""
    return (
        f"run {run['run_id']} {run['status']}: {run['rows_read']:,} read, {run['rows_scored']:,} scored, "
        f"{run['rows_rejected']:,} rejected in {run['seconds']['total']:.2f}s with model {run['model_version']}"
        + (f"; snapshot {run['snapshot']}" if run.get("snapshot") else "")
        + (
            f"; published {run['remote_publish']['rows']:,} segments to {run['remote_publish']['table']}"
            if (run.get("remote_publish") or {}).get("status") == "published"
            else ""
        )
        + (f"; drift: {describe(run['drift'])}" if describe(run.get("drift") or []) else "")
    )


@app.command()
@cli_errors
def score(
    ctx: typer.Context,
    all_customers: bool = typer.Option(
        False,
        "--all",
        help="Rescore every customer and rebuild segments (a customer gone from the feature table loses its segment).",
    ),
    model: str | None = typer.Option(
        None, "--model", metavar="VERSION", help="Score with this model version instead of the champion."
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Print the run's row as one JSON object, with seconds per phase."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar (there is none off a terminal either)."),
    lock_timeout: float | None = typer.Option(None, "--lock-timeout", metavar="SECONDS", help=_LOCK_HELP),
    engine: str = typer.Option(
        "onnx",
        "--engine",
        metavar="onnx|sql",
        help="onnx: onnxruntime (default); sql: the model compiled to SQL, scored inside DuckDB.",
    ),
    fail_on_drift: bool = typer.Option(
        False,
        "--fail-on-drift",
        help="Exit 3 when a feature's or the score's drift is 'alert' (the run is committed and published anyway).",
    ),
) -> None:
    """Score the customers that need it (new, changed, or scored by another model) into segments.

    One run is one transaction: segments, history, rejected rows and the run's
    row in scoring_runs appear together or not at all. After it commits, the
    analyst snapshot is published, and, when MALLSCORE_PUBLISH_URL is set, the
    segments are published there (table MALLSCORE_PUBLISH_TABLE). Exit 75 when
    the warehouse stays locked, 78 for a missing or tampered model or one needing
    a feature the warehouse lacks, 130/143 when interrupted (rolled back); when
    only the publishing fails, the run stays committed and the exit code is the
    publish error's (75 or 78). With --fail-on-drift, exit 3 when the run's drift
    (PSI against the training population) is at alert level for any feature or
    the score; the run is committed all the same.
    """
    from mallscore.publish import publish_after_run
    from mallscore.scoring import score_customers

    settings = settings_from(ctx, lock_timeout=lock_timeout)
    with _progress_bar(is_terminal() and not quiet and not json_out) as progress:
        run = score_customers(
            settings,
            mode="all" if all_customers else "nightly",
            model_version=model,
            progress=progress,
            engine=engine.lower(),
        )
    run["remote_publish"] = remote = publish_after_run(settings, run["run_id"])
    if json_out:
        emit_json(run)
    else:
        typer.echo(summary_line(run))
    if remote is not None and remote["status"] == "failed":
        raise fail(remote["message"], remote["exit_code"])
    alerts = [d for d in run.get("drift") or [] if d["status"] == "alert"]
    if fail_on_drift and alerts:
        from mallscore.errors import EXIT_DRIFT

        raise fail(
            f"run {run['run_id']} committed, but drift is at alert level: {describe(alerts)}; "
            f"see `mallscore drift --run {run['run_id']}`",
            EXIT_DRIFT,
        )


def _customer_line(c: dict) -> str:
    if c["status"] == "rejected":
        return f"customer {c['customer_id']}: rejected ({c['reason']})"
    label = "high spender" if c["predicted_high_spender"] else "not a high spender"
    return (
        f"customer {c['customer_id']}: p_high_spender={c['p_high_spender']:.4f} ({label}), "
        f"segment={c['segment']}, basis={c['basis']}"
        + (f", behaviour_group={c['behaviour_group']}" if c.get("behaviour_group") else "")
        + (f", top_reason={c['top_reason']}" if c.get("top_reason") else "")
    )


@app.command()
@cli_errors
def rescore(
    ctx: typer.Context,
    ids: list[int] = typer.Argument(..., metavar="ID...", help="Customer ids to score now."),
    write: bool = typer.Option(False, "--write", help="Also update segments, logged as a run of mode adhoc."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    lock_timeout: float | None = typer.Option(None, "--lock-timeout", metavar="SECONDS", help=_LOCK_HELP),
) -> None:
    """Score a few customers with the champion and print probability, segment and basis.

    Unknown ids are reported and do not stop the others (exit 65 only when no
    id is known). Without --write nothing is written.
    """
    from mallscore.scoring import rescore_customers

    result = rescore_customers(settings_from(ctx, lock_timeout=lock_timeout), ids, write=write)
    if json_out:
        emit_json(result)
        return
    for customer in result["customers"]:
        typer.echo(_customer_line(customer))
    for cid in result["unknown"]:
        typer.echo(f"customer {cid}: unknown (not in the warehouse)")
    written = f"; written as run {result['run_id']}" if result["run_id"] else " (not written; add --write)"
    typer.echo(f"model {result['model_version']}{written}")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return f"{value:,}" if isinstance(value, int) else str(value)


@app.command()
@cli_errors
def runs(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", min=1, max=1_000_000, help="How many recent runs to list."),
    json_out: bool = typer.Option(False, "--json", help="Print the runs as a JSON list."),
    lock_timeout: float | None = typer.Option(None, "--lock-timeout", metavar="SECONDS", help=_LOCK_HELP),
) -> None:
    """List recent scoring runs, newest first."""
    from mallscore.scoring import recent_runs

    rows = recent_runs(settings_from(ctx, lock_timeout=lock_timeout), limit=limit)
    if json_out:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no scoring runs yet: run `mallscore score`")
        return
    header = f"{'run_id':<26} {'mode':<8} {'status':<10} {'started_at':<19} {'model':<24} {'read':>12} {'scored':>12} {'rejected':>9}"
    typer.echo(header)
    for r in rows:
        typer.echo(
            f"{r['run_id']:<26} {r['mode']:<8} {r['status']:<10} {_cell(r['started_at']):<19} {_cell(r['model_version']):<24} "
            f"{_cell(r['rows_read']):>12} {_cell(r['rows_scored']):>12} {_cell(r['rows_rejected']):>9}"
        )
        if r["error"]:
            typer.echo(f"    error: {r['error']}")
