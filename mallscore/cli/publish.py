"""Commands that reach the mall's own database: ``publish`` segments there, ``export-sql`` to score there."""

from __future__ import annotations

import typer

from mallscore.cli._common import cli_errors, emit_json, settings_from
from mallscore.cli.app import app


@app.command()
@cli_errors
def publish(
    ctx: typer.Context,
    to: str | None = typer.Option(
        None,
        "--to",
        metavar="URL",
        help="Target database, a SQLAlchemy URL such as postgresql://user@host/db [env MALLSCORE_PUBLISH_URL]. "
        "Keep the password out of the command line: PGPASSWORD, ~/.pgpass or the environment variable.",
    ),
    table: str | None = typer.Option(
        None,
        "--table",
        metavar="NAME",
        help="Target table, [schema.]name; run rows go to NAME_runs [env MALLSCORE_PUBLISH_TABLE; default mallscore_segments].",
    ),
    lock_timeout: float | None = typer.Option(
        None,
        "--lock-timeout",
        metavar="SECONDS",
        help="How long to wait for the warehouse lock and for another publisher of the same table [env MALLSCORE_LOCK_TIMEOUT; default 60].",
    ),
    full: bool = typer.Option(
        False,
        "--full",
        help="Rewrite every row even when the target holds an earlier run of this warehouse (default: incremental).",
    ),
    json_out: bool = typer.Option(
        False,
        "--json",
        help="Print {mode, rows_written, table, run_id, target, rows, inserted, updated, deleted, ...} as JSON.",
    ),
) -> None:
    """Publish segments (and their scoring_runs rows) to another database in one transaction.

    Only rows change (never DROP/RENAME/TRUNCATE of the live table), so every
    reader, whatever its isolation level, and pg_dump see the whole old table or
    the whole new one, and none of them makes the publish wait. Incremental by
    default: when the target holds an earlier run of this warehouse (recorded
    in NAME_runs), only the customers scored since are upserted and the removed
    ones deleted; otherwise, or with --full, every row is rewritten. Exit 75
    when the target is unreachable or busy (retry), 78 when the credentials,
    the database or a permission is wrong.
    """
    from mallscore.database import resolve_url
    from mallscore.publish import publish_segments

    settings = settings_from(ctx, lock_timeout=lock_timeout)
    url = resolve_url(to, settings.publish_url, "MALLSCORE_PUBLISH_URL", "target")
    result = publish_segments(settings, url, table or settings.publish_table, full=full)
    if json_out:
        emit_json(result)
        return
    detail = f"+{result['inserted']:,} ~{result['updated']:,} -{result['deleted']:,}"
    typer.echo(
        f"published run {result['run_id']} to {result['table']} on {result['target']}: {result['mode']}, "
        f"{result['rows_written']:,} rows written ({detail}), {result['rows']:,} segments "
        f"({result['method']}, {result['seconds']:.2f}s)"
    )


@app.command("export-sql")
@cli_errors
def export_sql(
    ctx: typer.Context,
    dialect: str = typer.Option("duckdb", "--dialect", metavar="duckdb|postgres|spark", help="SQL dialect to print."),
    model: str | None = typer.Option(None, "--model", metavar="VERSION", help="Model version [default: the champion]."),
    spec: str = typer.Option("default", "--spec", help="Model spec whose champion is exported (without --model)."),
    observed_score: bool = typer.Option(
        True,
        "--observed-score/--no-observed-score",
        help="Read spending_score from the feature table and give a customer whose score is known the tier of "
        "that score, as the nightly job does [default]; --no-observed-score for a table without the column "
        "(every customer then gets the model's tier).",
    ),
) -> None:
    """Print the model as one SQL SELECT over features_customer: the job's segments, computed in your engine.

    Columns: customer_id, p_high_spender, predicted_high_spender, segment, basis,
    by the same rules as `mallscore score` (rows it would quarantine are left
    out; a known spending score decides the tier). Run it in DuckDB, in the
    mall's PostgreSQL warehouse or with Spark's spark.sql() (with a
    features_customer table or view) to score inside the engine; it matches
    onnxruntime within 1e-6. Exit 78 when the model
    cannot be expressed exactly in SQL, is missing or was tampered with.
    """
    from mallscore.contract import OBSERVED_SCORE_COLUMN
    from mallscore.sqlexport import export_sql as build_sql

    settings = settings_from(ctx)
    column = OBSERVED_SCORE_COLUMN if observed_score else None
    typer.echo(build_sql(settings.models_dir, model, dialect.lower(), spec, column), nl=False)
