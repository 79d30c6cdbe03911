"""Read customers from the mall's own database (any SQLAlchemy URL) into the warehouse.

A database source is only another producer of raw text rows: this module
streams a table or a query in chunks (a server-side cursor, so a large table
never sits whole in memory), maps its column names with the same aliases as
CSV ingest (:func:`mallscore.ingest.map_header`) and hands the chunks to
:func:`mallscore.ingest.load_chunks`, which applies the one set of validation
rules and the ``rejected_rows`` quarantine. ``line_no`` of a database row is its
position in the result, 1 for the first row.

On PostgreSQL the read runs in a READ ONLY transaction: a ``--query`` cannot
change the source.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal

import duckdb
import pyarrow as pa

from mallscore.database import classify_error, create_engine, driver_errors, mask_url, split_table_name
from mallscore.errors import ConfigError, MallscoreError, UsageError
from mallscore.ingest import CHUNK_ROWS, COLUMNS, LoadResult, load_chunks, map_header


def _text(value: object) -> str | None:
    """A database value as the text a CSV would have held."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _chunk(rows: Sequence[Sequence[object]], positions: list[int], first_line: int) -> pa.Table:
    columns = {name: pa.array([_text(row[pos]) for row in rows], pa.string()) for name, pos in zip(COLUMNS, positions)}
    return pa.table(
        {
            "line_no": pa.array(range(first_line, first_line + len(rows)), pa.int64()),
            **columns,
            "problem": pa.nulls(len(rows), pa.string()),
        }
    )


def source_label(url: str, table: str | None, query: str | None) -> str:
    """How a database load is named in ``ingest_loads.source`` (password masked)."""
    return f"db:{mask_url(url)} table={table}" if table else f"db:{mask_url(url)} query"


def database_chunks(
    url: str, *, table: str | None = None, query: str | None = None, chunk_rows: int = CHUNK_ROWS
) -> Iterator[pa.Table]:
    """Raw text rows of a source table or query as Arrow chunks (``line_no`` + COLUMNS + ``problem``)."""
    import sqlalchemy as sa

    if (table is None) == (query is None):
        raise UsageError("give exactly one of --table NAME or --query SQL")
    label = source_label(url, table, query)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("set transaction read only")
            if table is not None:
                schema, name = split_table_name(table)
                if not sa.inspect(conn).has_table(name, schema=schema):
                    raise ConfigError(f"source table {table} does not exist on {mask_url(url)}")
                statement = sa.select(sa.text("*")).select_from(sa.table(name, schema=schema))
                result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(statement)
            else:
                # text() with every colon escaped: '::int' casts and ':' in literals stay as written,
                # and '%' is escaped for the driver
                statement = sa.text(query.replace(":", "\\:"))
                result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(statement)
                if not result.returns_rows:
                    raise UsageError("--query must be a SELECT that returns rows")
            positions = map_header([str(k) for k in result.keys()], label)
            line = 1
            for rows in result.partitions(chunk_rows):
                yield _chunk(rows, positions, line)
                line += len(rows)
    finally:
        engine.dispose()


def ingest_database(
    con: duckdb.DuckDBPyConnection,
    url: str,
    *,
    table: str | None = None,
    query: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> LoadResult:
    """Load customers from a database table or query, with CSV ingest's rules and quarantine."""
    label = source_label(url, table, query)
    try:
        return load_chunks(con, database_chunks(url, table=table, query=query, chunk_rows=chunk_rows), source=label)
    except MallscoreError:
        raise
    except driver_errors() as exc:
        raise classify_error(exc, url, "reading customers from") from None
