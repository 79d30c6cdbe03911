"""Commands that put data into the warehouse and describe it: ingest, synth, features, status, demo."""

from __future__ import annotations

from pathlib import Path

import typer

from mallscore.cli._common import cli_errors, emit_json, settings_from
from mallscore.cli.app import app


@app.command()
@cli_errors
def ingest(
    ctx: typer.Context,
    file: Path | None = typer.Argument(
        None,
        help="Customers CSV (public-data or snake_case header; ',', ';', tab or '|' separated); '-' reads standard "
        "input (zcat day.csv.gz | mallscore ingest -), and a named pipe works too: both are read to the end before "
        "the warehouse is locked.",
    ),
    source: str | None = typer.Option(
        None,
        "--from",
        metavar="URL",
        help="Read from a database instead: a SQLAlchemy URL such as postgresql://user@host/db "
        "[env MALLSCORE_SOURCE_URL]. Keep the password out of the command line (PGPASSWORD, ~/.pgpass).",
    ),
    table: str | None = typer.Option(None, "--table", metavar="NAME", help="Source table, [schema.]name."),
    query: str | None = typer.Option(
        None, "--query", metavar="SQL", help="Source query (a SELECT), instead of --table."
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Print {load_id, rows_in_file, loaded, rejected, ...} as JSON."
    ),
) -> None:
    """Load customers from a CSV file or a database: valid rows are upserted, bad rows go to rejected_rows with a reason.

    An empty spending score marks a new customer. Loading the same data twice
    changes nothing; a changed row for a known customer updates it. A database
    source (--from URL with --table or --query) uses the same column names and rules.
    Exit 65 when the input is not usable, 66 when a file is missing, 75 when the
    source database is unreachable (retry), 78 for bad credentials, a missing table or no permission.
    """
    from mallscore.errors import UsageError
    from mallscore.warehouse import open_warehouse

    settings = settings_from(ctx)
    from_database = source is not None or table is not None or query is not None
    if file is not None and from_database:
        raise UsageError("give a CSV file or a database source (--from/--table/--query), not both")
    if file is None and not from_database:
        raise UsageError("give a CSV file, or --table NAME / --query SQL with --from URL (or MALLSCORE_SOURCE_URL)")
    if from_database:
        from mallscore.database import resolve_url
        from mallscore.ingest_db import ingest_database

        if (table is None) == (query is None):
            raise UsageError("with a database source, give exactly one of --table NAME or --query SQL")
        url = resolve_url(source, settings.source_url, "MALLSCORE_SOURCE_URL", "source")
        with open_warehouse(settings, key_checks=False) as con:
            result = ingest_database(con, url, table=table, query=query)
        unit = "rows in source"
    else:
        from mallscore.ingest import ingest_csv, spooled

        # a pipe or standard input is read to its end before the warehouse lock is taken
        with (
            spooled(file, settings.warehouse.parent) as (path, name),
            open_warehouse(settings, key_checks=False) as con,
        ):
            result = ingest_csv(con, path, name=name)
        unit = "rows in file"
    if json_out:
        emit_json(result.as_dict())
        return
    typer.echo(
        f"{result.load_id}: {result.rows_in_file} {unit} = {result.loaded} loaded + {result.rejected} rejected "
        f"({result.inserted} new, {result.updated} updated, {result.unchanged} unchanged; {result.route} route)"
    )
    if result.rejected:
        typer.echo(f"see rejected rows: select * from rejected_rows where load_id = '{result.load_id}'")


@app.command()
@cli_errors
def synth(
    ctx: typer.Context,
    rows: int = typer.Option(..., "--rows", min=0, max=10**9, help="How many customers to generate."),
    seed: int = typer.Option(42, "--seed", min=0, help="Random seed: the same seed gives the same customers."),
    new: bool = typer.Option(False, "--new", help="New customers: no spending score yet."),
    csv: Path | None = typer.Option(
        None, "--csv", metavar="FILE", help="Write a CSV in the public data's format instead of the warehouse."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Generate synthetic customers shaped like the public Mall Customers data."""
    from mallscore.synth import SynthResult, generate, synth_customers, write_csv
    from mallscore.warehouse import open_warehouse

    if csv is not None:
        first_id = _first_free_id(settings_from(ctx))  # a later ingest of the file must not overwrite anyone
        write_csv(generate(rows, seed, new=new, first_id=first_id), csv)
        result = SynthResult(rows, first_id, first_id + rows - 1, seed, new, str(csv))
    else:
        with open_warehouse(settings_from(ctx)) as con:
            result = synth_customers(con, rows, seed, new=new)
    if json_out:
        emit_json(result.__dict__)
    else:
        kind = "new customers (no score)" if new else "customers with scores"
        typer.echo(f"wrote {result.rows} synthetic {kind} (ids {result.first_id}..{result.last_id}) to {result.target}")


def _first_free_id(settings) -> int:
    """The first id above every customer in the configured warehouse (1 when there is none yet)."""
    from mallscore.synth import next_free_id
    from mallscore.warehouse import open_warehouse

    if not settings.warehouse.exists():
        return 1
    with open_warehouse(settings, read_only=True) as con:
        has_table = con.execute(
            "select count(*) from duckdb_tables() where table_name = 'raw_customers' "
            "and database_name = current_database()"
        ).fetchall()[0][0]
        return next_free_id(con) if has_table else 1


@app.command()
@cli_errors
def features(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help='Print {"relations": {...}, "labels": {"rows", "positives"}}.'),
) -> None:
    """Build every table and view from sql/ (idempotent) and run the key checks."""
    from mallscore.warehouse import label_counts, open_warehouse, relation_counts

    with open_warehouse(settings_from(ctx)) as con:
        counts = relation_counts(con)
        labels = label_counts(con)
    if json_out:
        emit_json({"relations": counts, "labels": labels})
        return
    for name, n in counts.items():
        typer.echo(f"{name:<22} {'not counted' if n is None else format(n, ','):>12}")
    typer.echo(f"labelled rows: {labels['rows']:,}, high spenders: {labels['positives']:,}")


@app.command()
@cli_errors
def status(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """Row counts, the most recent loads and rejected rows by reason (read-only; exit 66 when there is no warehouse)."""
    from mallscore.status import warehouse_status
    from mallscore.warehouse import open_warehouse

    with open_warehouse(settings_from(ctx), read_only=True) as con:  # only reads: never creates or writes
        info = warehouse_status(con)
    if json_out:
        emit_json(info)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    counts = Table("relation", "rows", title="Warehouse")
    for name, n in info["relations"].items():
        counts.add_row(name, "not counted" if n is None else f"{n:,}")
    console.print(counts)
    loads = Table("load_id", "source", "rows", "loaded", "rejected", title="Recent loads")
    for load in info["recent_loads"]:
        loads.add_row(
            load["load_id"], load["source"], str(load["rows_in_file"]), str(load["loaded"]), str(load["rejected"])
        )
    console.print(loads)
    if info["rejected_by_reason"]:
        rej = Table("batch", "reason", "rows", title="Rejected rows")
        for r in info["rejected_by_reason"]:
            rej.add_row(r["batch"], r["reason"], str(r["rows"]))
        console.print(rej)


@app.command()
@cli_errors
def demo(
    ctx: typer.Context,
    rows: int = typer.Option(600, "--rows", min=50, max=10**7, help="Synthetic customers with known scores."),
    new_rows: int = typer.Option(400, "--new-rows", min=0, max=10**7, help="Synthetic new customers (no score yet)."),
    seed: int = typer.Option(7, "--seed", min=0),
) -> None:
    """Run the whole pipeline end to end on synthetic data and print a summary.

    Only on a warehouse without customers and a models folder without a champion
    (else exit 2): the demo never mixes synthetic customers into real data.
    """
    from mallscore.demo import run_demo

    for line in run_demo(settings_from(ctx), rows=rows, new_rows=new_rows, seed=seed):
        typer.echo(line)
