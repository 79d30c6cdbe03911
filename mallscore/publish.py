"""Publish the current ``segments`` (and their ``scoring_runs`` rows) to the mall's own database.

Campaign tools read segments where they already look. Readers of the target
must never see a half-written table, so every publish is one transaction on
the target:

1. take an advisory lock (PostgreSQL) so two publishers queue instead of racing;
2. create a uniquely named staging table and bulk-load it: PostgreSQL through
   ``COPY ... FROM STDIN (FORMAT binary)`` fed with DuckDB's Arrow batches
   encoded by :mod:`mallscore.pgcopy` (never a Python loop over rows; CSV
   written by pyarrow when a column type has no binary encoder); any other
   SQLAlchemy database through chunked ``executemany`` inserts;
3. add the primary key, carry over the old table's grants, then drop the old
   table and rename the staging table into its place, and upsert the run rows
   into ``<table>_runs``;
4. commit.

A failure at any step (or a killed process) rolls everything back: yesterday's
table stays intact and readable. The swap waits at most ``lock_timeout`` for
readers that hold the old table, then gives up with a retryable error.
Publishing the same run twice gives the same tables.
"""

from __future__ import annotations

import io
import itertools
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import duckdb

from mallscore.database import (
    classify_error,
    create_engine,
    driver_errors,
    is_postgres,
    mask_url,
    scrub,
    split_table_name,
)
from mallscore.errors import EXIT_UNEXPECTED, InputMissingError, MallscoreError
from mallscore.settings import DEFAULT_PUBLISH_TABLE, Settings

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

DEFAULT_TABLE = DEFAULT_PUBLISH_TABLE
BATCH_ROWS = 100_000
INSERT_CHUNK_ROWS = 10_000

# (column, PostgreSQL type); the same order as sql/04_segments.sql
SEGMENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("customer_id", "bigint not null"),
    ("segment", "text not null"),
    ("p_high_spender", "double precision not null"),
    ("predicted_high_spender", "boolean not null"),
    ("basis", "text not null"),
    ("model_version", "text not null"),
    ("run_id", "text not null"),
    ("scored_at", "timestamp not null"),
    ("customer_updated_at", "timestamp not null"),
)
RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "text primary key"),
    ("mode", "text not null"),
    ("started_at", "timestamp not null"),
    ("finished_at", "timestamp"),
    ("status", "text not null"),
    ("model_version", "text"),
    ("model_sha256", "text"),
    ("rows_read", "bigint"),
    ("rows_scored", "bigint"),
    ("rows_rejected", "bigint"),
    ("error", "text"),
    ("published_at", "timestamp not null"),
)
_GRANTABLE = {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"}

BatchHook = Callable[[int], None]


def publish_segments(settings: Settings, url: str, table: str = DEFAULT_TABLE) -> dict:
    """Open the warehouse read-only and publish its segments to ``url`` (see module docstring)."""
    from mallscore.warehouse import open_warehouse

    with open_warehouse(settings, read_only=True) as con:
        return publish_from(con, url, table, lock_timeout=settings.lock_timeout)


def publish_after_run(settings: Settings, run_id: str) -> dict | None:
    """The nightly job's optional last step: publish when ``settings.publish_url`` is set (else None).

    The run is already committed, so a failure is returned, not raised:
    ``{"status": "failed", "exit_code": 75 or 78, "error": ...}`` with every
    password masked; success is :func:`publish_segments`'s result with
    ``status`` published. The table is ``settings.publish_table``
    (``MALLSCORE_PUBLISH_TABLE``, default :data:`DEFAULT_TABLE`).
    """
    url, table = settings.publish_url, settings.publish_table
    if not url:
        return None
    try:
        return {"status": "published", **publish_segments(settings, url, table)}
    except Exception as exc:  # whatever it was, the committed run stands; say so and keep the exit code
        code = exc.exit_code if isinstance(exc, MallscoreError) else EXIT_UNEXPECTED
        error = scrub((str(exc).splitlines() or [type(exc).__name__])[0], url)
        return {
            "status": "failed",
            "target": mask_url(url),
            "table": table,
            "exit_code": code,
            "error": error,
            "message": f"run {run_id} succeeded and is committed, but publishing its segments to {table} failed "
            f"({error}); retry with `mallscore publish`",
        }


def publish_from(
    con: duckdb.DuckDBPyConnection,
    url: str,
    table: str = DEFAULT_TABLE,
    *,
    lock_timeout: float = 60.0,
    batch_rows: int = BATCH_ROWS,
    bulk: bool = True,
    on_batch: BatchHook | None = None,
) -> dict:
    """Publish ``segments`` from an open warehouse connection; returns what was published.

    ``bulk=False`` forces the generic insert path even on PostgreSQL (for the
    benchmark). ``on_batch`` is called with the running row count after each
    loaded batch (progress; tests use it to fail mid-publish).
    """
    schema, name = split_table_name(table)
    rows, run_ids = _snapshot_counts(con)
    if rows == 0:
        raise InputMissingError(
            "no segments to publish: the warehouse's segments table is empty (run `mallscore score` first)"
        )
    runs = _run_rows(con, run_ids)
    engine = create_engine(url)
    started = time.perf_counter()
    published_at = datetime.now(UTC).replace(tzinfo=None)
    try:
        with engine.begin() as conn:
            if bulk and is_postgres(engine):
                method = "copy"
                loaded = _publish_postgres(
                    conn, con, schema, name, runs, published_at, lock_timeout, batch_rows, on_batch
                )
            else:
                method = "insert"
                loaded = _publish_generic(conn, con, schema, name, runs, published_at, batch_rows, on_batch)
            if loaded != rows:
                raise InputMissingError(
                    f"segments changed while publishing ({rows} rows counted, {loaded} loaded); nothing was published"
                )
    except MallscoreError:
        raise
    except driver_errors() as exc:
        raise classify_error(exc, url, f"publishing {table} to") from None
    finally:
        engine.dispose()
    return {
        "target": mask_url(url),
        "table": table,
        "runs_table": _qualified(schema, name + "_runs"),
        "rows": rows,
        "run_ids": run_ids,
        "method": method,
        "seconds": round(time.perf_counter() - started, 3),
        "published_at": published_at.isoformat(timespec="seconds"),
    }


def _qualified(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


def _snapshot_counts(con: duckdb.DuckDBPyConnection) -> tuple[int, list[str]]:
    rows = con.execute("select count(*) from segments").fetchall()[0][0]
    run_ids = [r[0] for r in con.execute("select distinct run_id from segments order by run_id").fetchall()]
    return int(rows), run_ids


def _run_rows(con: duckdb.DuckDBPyConnection, run_ids: list[str]) -> list[tuple]:
    names = ", ".join(c for c, _ in RUN_COLUMNS[:-1])
    return con.execute(
        f"select {names} from scoring_runs where list_contains($ids, run_id) order by run_id", {"ids": run_ids}
    ).fetchall()


def _segment_batches(con: duckdb.DuckDBPyConnection, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Segments as Arrow batches, streamed through a cursor so ``con`` stays usable."""
    names = ", ".join(c for c, _ in SEGMENT_COLUMNS)
    cursor = con.cursor()
    try:
        reader = cursor.sql(f"select {names} from segments order by customer_id").to_arrow_reader(batch_rows)
        yield from reader
    finally:
        cursor.close()


# --- PostgreSQL: COPY into a staging table, swap --------------------------------------


def _publish_postgres(conn, con, schema, name, runs, published_at, lock_timeout, batch_rows, on_batch) -> int:
    from psycopg import sql

    pg = conn.connection.driver_connection
    stage_name = f"{name}__stage_{secrets.token_hex(4)}"
    ident = (lambda n: sql.Identifier(schema, n)) if schema else (lambda n: sql.Identifier(n))
    target, stage, runs_table = ident(name), ident(stage_name), ident(name + "_runs")
    qualified = _qualified(schema, name)
    with pg.cursor() as cur:
        cur.execute("select set_config('lock_timeout', %s, true)", [f"{int(max(lock_timeout, 0.001) * 1000)}ms"])
        cur.execute("select pg_advisory_xact_lock(hashtext(%s))", [f"mallscore.publish:{qualified}"])
        cur.execute(sql.SQL("create table {} ({})").format(stage, _column_defs(SEGMENT_COLUMNS)))
        loaded = _copy_batches(cur, stage, _segment_batches(con, batch_rows), on_batch)
        cur.execute(
            sql.SQL("alter table {} add constraint {} primary key (customer_id)").format(
                stage, sql.Identifier(stage_name + "_pkey")
            )
        )
        cur.execute(sql.SQL("analyze {}").format(stage))
        grants = cur.execute(
            """
            select coalesce(r.rolname, 'PUBLIC'), a.privilege_type
            from pg_class c cross join lateral aclexplode(c.relacl) a
            left join pg_roles r on r.oid = a.grantee
            where c.oid = to_regclass(%s) and a.grantee <> c.relowner
            """,
            [sql.Identifier(*(p for p in (schema, name) if p)).as_string(pg)],
        ).fetchall()
        for grantee, privilege in grants:
            if privilege in _GRANTABLE:
                cur.execute(
                    sql.SQL("grant {} on {} to {}").format(
                        sql.SQL(privilege), stage, sql.SQL("public") if grantee == "PUBLIC" else sql.Identifier(grantee)
                    )
                )
        # the swap: waits for readers of the old table at most lock_timeout
        cur.execute(sql.SQL("drop table if exists {}").format(target))
        cur.execute(sql.SQL("alter table {} rename to {}").format(stage, sql.Identifier(name)))
        cur.execute(
            sql.SQL("alter table {} rename constraint {} to {}").format(
                target, sql.Identifier(stage_name + "_pkey"), sql.Identifier(name + "_pkey")
            )
        )
        cur.execute(sql.SQL("create table if not exists {} ({})").format(runs_table, _column_defs(RUN_COLUMNS)))
        cur.execute(sql.SQL("delete from {} where run_id = any(%s)").format(runs_table), [[r[0] for r in runs]])
        if runs:
            cur.executemany(
                sql.SQL("insert into {} values ({})").format(
                    runs_table, sql.SQL(", ").join(sql.Placeholder() * len(RUN_COLUMNS))
                ),
                [(*r, published_at) for r in runs],
            )
    return loaded


def _copy_batches(cur, table, batches: Iterator[pa.RecordBatch], on_batch: BatchHook | None) -> int:
    """COPY Arrow batches into ``table``: binary format when every column encodes, else CSV; returns rows."""
    import pyarrow.csv as pacsv
    from psycopg import sql
    from psycopg.copy import QueuedLibpqWriter

    from mallscore import pgcopy

    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        return 0
    binary = pgcopy.encodable(first.schema)
    names = pgcopy.column_order(first.schema) if binary else first.schema.names
    statement = sql.SQL("copy {} ({}) from stdin (format {})").format(
        table, sql.SQL(", ").join(sql.Identifier(c) for c in names), sql.SQL("binary" if binary else "csv")
    )
    options = pacsv.WriteOptions(include_header=False)
    loaded = 0
    # the queued writer sends from a thread, so the server parses one batch while we encode the next
    with cur.copy(statement, writer=QueuedLibpqWriter(cur)) as copy:
        if binary:
            copy.write(pgcopy.HEADER)
        for batch in itertools.chain([first], batches):
            if binary and not any(c.null_count for c in batch.columns):
                copy.write(pgcopy.encode_batch(batch))
            elif binary:
                raise ValueError("NULL in a NOT NULL segments column")
            else:
                buffer = io.BytesIO()
                pacsv.write_csv(batch, buffer, options)
                copy.write(buffer.getvalue())
            loaded += batch.num_rows
            if on_batch:
                on_batch(loaded)
        if binary:
            copy.write(pgcopy.TRAILER)
    return loaded


def _column_defs(columns: tuple[tuple[str, str], ...]):
    from psycopg import sql

    return sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns)


# --- any other SQLAlchemy database: chunked inserts into a staging table, swap ---------


def _sa_tables(metadata, schema: str | None, stage_name: str, runs_name: str):
    import sqlalchemy as sa

    types = {
        "bigint": sa.BigInteger,
        "text": sa.Text,
        "double precision": sa.Double,
        "boolean": sa.Boolean,
        "timestamp": sa.DateTime,
    }

    def column(name: str, spec: str) -> sa.Column:
        base = next(t for t in sorted(types, key=len, reverse=True) if spec.startswith(t))
        kind = types[base]() if base != "text" else sa.String(200) if name == "run_id" else sa.Text()
        return sa.Column(
            name,
            kind,
            nullable="not null" not in spec and "primary key" not in spec,
            primary_key=name == "customer_id" or "primary key" in spec,
        )

    stage = sa.Table(stage_name, metadata, *(column(c, t) for c, t in SEGMENT_COLUMNS), schema=schema)
    runs = sa.Table(runs_name, metadata, *(column(c, t) for c, t in RUN_COLUMNS), schema=schema)
    return stage, runs


def _publish_generic(conn, con, schema, name, runs, published_at, batch_rows, on_batch) -> int:
    import sqlalchemy as sa

    metadata = sa.MetaData()
    stage_name = f"{name}__stage_{secrets.token_hex(4)}"
    stage, runs_table = _sa_tables(metadata, schema, stage_name, name + "_runs")
    preparer = conn.dialect.identifier_preparer
    target = preparer.quote_schema(schema) + "." + preparer.quote(name) if schema else preparer.quote(name)
    stage.create(conn)
    loaded = 0
    for batch in _segment_batches(con, batch_rows):
        records = batch.to_pylist()
        for start in range(0, len(records), INSERT_CHUNK_ROWS):
            conn.execute(stage.insert(), records[start : start + INSERT_CHUNK_ROWS])
        loaded += batch.num_rows
        if on_batch:
            on_batch(loaded)
    conn.execute(sa.text(f"drop table if exists {target}"))
    conn.execute(sa.text(f"alter table {preparer.format_table(stage)} rename to {preparer.quote(name)}"))
    runs_table.create(conn, checkfirst=True)
    conn.execute(runs_table.delete().where(runs_table.c.run_id.in_([r[0] for r in runs])))
    if runs:
        names = [c for c, _ in RUN_COLUMNS]
        conn.execute(runs_table.insert(), [dict(zip(names, (*r, published_at))) for r in runs])
    return loaded
