"""Commands that only read: segments, changes, rejected (to the terminal or a file).

Each opens the warehouse read-only (``--snapshot``: the analyst snapshot, which
never blocks the nightly job), never creates one (a missing one is exit 66),
and writes ``--format table|csv|jsonl|parquet`` to standard output or to
``--output FILE`` (written under a temporary name and renamed into place).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import typer

from mallscore.cli._common import cli_errors, settings_from
from mallscore.cli.app import app

_FORMAT_HELP = (
    "table (the default on a terminal; at most 100 rows), csv (the default otherwise), jsonl or parquet "
    "(needs --output); with --output the file's extension picks it."
)
_OUTPUT_HELP = "Write to FILE (atomically: a temporary name, then renamed) instead of standard output."
_SNAPSHOT_HELP = "Read the analyst snapshot instead of the warehouse (never blocks the nightly job)."


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat() + "Z"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _print_table(title: str, columns: list[str], rows: list[tuple], more: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    caption = (
        f"the first {len(rows):,} rows; --limit N, or --format csv|jsonl|parquet, for more"
        if more
        else f"{len(rows):,} row(s)"
    )
    table = Table(*columns, title=title, caption=caption)
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    Console().print(table)


def _read(
    ctx: typer.Context, title: str, build: Callable, fmt: str | None, output: Path | None, snapshot: bool
) -> None:
    from mallscore.exports import export_to_file, export_to_stream, format_for, read_rows

    settings = settings_from(ctx)
    fmt = format_for(fmt, output, sys.stdout.isatty())
    if output is not None:
        result = export_to_file(settings, build, fmt, output, snapshot=snapshot)
        typer.echo(f"wrote {result.rows:,} {title} to {result.path} ({result.format}, from {result.source})")
    elif fmt == "table":
        columns, rows, more = read_rows(settings, build, snapshot=snapshot)
        _print_table(title, columns, rows, more)
    else:
        export_to_stream(settings, build, fmt, sys.stdout.buffer, snapshot=snapshot)


@app.command()
@cli_errors
def segments(
    ctx: typer.Context,
    segment: str | None = typer.Option(None, "--segment", metavar="NAME", help="Only this segment (e.g. premium)."),
    limit: int | None = typer.Option(None, "--limit", metavar="N", min=0, help="At most N rows (by customer id)."),
    fmt: str | None = typer.Option(None, "--format", metavar="table|csv|jsonl|parquet", help=_FORMAT_HELP),
    output: Path | None = typer.Option(None, "--output", metavar="FILE", help=_OUTPUT_HELP),
    snapshot: bool = typer.Option(False, "--snapshot", help=_SNAPSHOT_HELP),
) -> None:
    """Current segments, one row per customer (with --limit: the first N by customer id).

    Columns: customer_id, segment, p_high_spender, predicted_high_spender,
    basis, model_version, run_id, scored_at, customer_updated_at.
    """
    from mallscore.exports import segments_query

    _read(ctx, "segments", segments_query(segment, limit), fmt, output, snapshot)


@app.command()
@cli_errors
def changes(
    ctx: typer.Context,
    run: str | None = typer.Option(
        None, "--run", metavar="RUN_ID", help="The changes of this run [default: the latest succeeded run]."
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        metavar="RUN_ID",
        help="Every change after this run, collapsed to each customer's net change (what a tool that last "
        "synced at RUN_ID must apply).",
    ),
    fmt: str | None = typer.Option(None, "--format", metavar="table|csv|jsonl|parquet", help=_FORMAT_HELP),
    output: Path | None = typer.Option(None, "--output", metavar="FILE", help=_OUTPUT_HELP),
    snapshot: bool = typer.Option(False, "--snapshot", help=_SNAPSHOT_HELP),
) -> None:
    """The segment change feed: customers that are new, changed segment or label, or were removed.

    Columns: customer_id, run_id, change (new|changed|removed), previous_segment,
    segment, previous_p_high_spender, p_high_spender,
    previous_predicted_high_spender, predicted_high_spender, scored_at. Nothing
    changed: no rows (a csv header only). Exit 66 for an unknown run.
    """
    from mallscore.exports import changes_query

    _read(ctx, "changes", changes_query(run, since), fmt, output, snapshot)


@app.command()
@cli_errors
def rejected(
    ctx: typer.Context,
    load: str | None = typer.Option(None, "--load", metavar="LOAD_ID", help="Only the rows this load rejected."),
    run: str | None = typer.Option(None, "--run", metavar="RUN_ID", help="Only the rows this scoring run rejected."),
    fmt: str | None = typer.Option(None, "--format", metavar="table|csv|jsonl|parquet", help=_FORMAT_HELP),
    output: Path | None = typer.Option(None, "--output", metavar="FILE", help=_OUTPUT_HELP),
    snapshot: bool = typer.Option(False, "--snapshot", help=_SNAPSHOT_HELP),
) -> None:
    """Rejected rows with their reason: of one load, one run, or all.

    Columns: load_id, run_id, line_no, customer_id, raw_values, reason, rejected_at.
    Exit 66 for an unknown load or run.
    """
    from mallscore.exports import rejected_query

    _read(ctx, "rejected rows", rejected_query(load, run), fmt, output, snapshot)
