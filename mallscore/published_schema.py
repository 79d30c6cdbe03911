"""The published schema, derived from the warehouse's catalog: one type mapping from DuckDB to any target.

``sql/03_scoring_runs.sql``, ``sql/04_segments.sql`` (and any table a publish
copies) define the columns once; publishing reads them from DuckDB's catalog
(``duckdb_columns()``, the primary key from ``duckdb_constraints()`` or the
file's ``-- unique_key:`` mark) and maps every type through
:func:`column_type` to SQLAlchemy, which renders PostgreSQL's DDL as well as
any other database's. A column added to the SQL is published without touching
Python. :func:`read_source` reads what a publish copies: the columns, the rows'
count, and the runs they reflect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mallscore.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import duckdb
    import sqlalchemy as sa


@dataclass(frozen=True)
class Column:
    """One column of a warehouse relation as its catalog describes it."""

    name: str
    duck_type: str
    nullable: bool
    key: bool


_DECIMAL = re.compile(r"^DECIMAL\((\d+),\s*(\d+)\)$")


def column_type(duck_type: str, key: bool = False) -> sa.types.TypeEngine:
    """The one mapping of a DuckDB column type to a SQLAlchemy type (PostgreSQL and every generic target).

    PostgreSQL renders these as bigint, integer, double precision, boolean,
    text, timestamp (without time zone), date, numeric(p, s). A text key is
    ``VARCHAR(255)`` on MySQL/MariaDB, which cannot index unbounded text.
    """
    import sqlalchemy as sa

    simple = {
        "BIGINT": sa.BigInteger,
        "INTEGER": sa.Integer,
        "SMALLINT": sa.SmallInteger,
        "DOUBLE": sa.Double,
        "FLOAT": sa.Float,
        "BOOLEAN": sa.Boolean,
        "DATE": sa.Date,
        "TIMESTAMP": sa.DateTime,
    }
    upper = duck_type.upper()
    if upper in simple:
        return simple[upper]()
    if upper == "VARCHAR":
        return sa.Text().with_variant(sa.String(255), "mysql", "mariadb") if key else sa.Text()
    if upper == "TIMESTAMP WITH TIME ZONE":
        return sa.DateTime(timezone=True)
    match = _DECIMAL.match(upper)
    if match:
        return sa.Numeric(int(match.group(1)), int(match.group(2)))
    raise ConfigError(f"cannot publish a column of DuckDB type {duck_type}: no mapping to the target database")


def warehouse_columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[Column]:
    """The columns of ``relation`` in catalog order; the key is its primary key or its ``-- unique_key:`` mark."""
    from mallscore.warehouse import sql_files

    rows = con.execute(
        "select column_name, data_type, is_nullable from duckdb_columns() "
        "where schema_name = 'main' and table_name = $t order by column_index",
        {"t": relation},
    ).fetchall()
    if not rows:
        raise ConfigError(f"the warehouse has no {relation} table; build it first (`mallscore features`)")
    primary = con.execute(
        "select constraint_column_names from duckdb_constraints() "
        "where schema_name = 'main' and table_name = $t and constraint_type = 'PRIMARY KEY'",
        {"t": relation},
    ).fetchall()
    if primary:
        keys = set(primary[0][0])
    else:
        marked = [f.unique_key for f in sql_files() if f.relation == relation and f.unique_key]
        keys = set(marked)
    return [
        Column(name, _published_type(dtype), bool(nullable) and name not in keys, name in keys)
        for name, dtype, nullable in rows
    ]


def _published_type(duck_type: str) -> str:
    """The type a column is published as: an ENUM (mallscore.labels) as the text it reads as."""
    return "VARCHAR" if duck_type.startswith("ENUM(") else duck_type


def select_list(columns: list[Column]) -> str:
    """The SELECT list that reads ``columns`` as published: text as text (an ENUM would reach Arrow as a dictionary)."""
    return ", ".join(
        f"cast({quote(c.name)} as varchar) as {quote(c.name)}" if c.duck_type == "VARCHAR" else quote(c.name)
        for c in columns
    )


def sa_table(metadata, schema: str | None, name: str, columns: list[Column], *, key: bool = True, temp=False):
    """A SQLAlchemy table with ``columns`` (primary key unless ``key=False``; ``temp``: a temporary table)."""
    import sqlalchemy as sa

    return sa.Table(
        name,
        metadata,
        *(
            sa.Column(
                c.name,
                column_type(c.duck_type, c.key),
                nullable=c.nullable,
                primary_key=key and c.key,
                autoincrement=False,
            )
            for c in columns
        ),
        schema=schema,
        prefixes=["TEMPORARY"] if temp else [],
    )


# --- what the warehouse publishes ---------------------------------------------------------------

# Runs that ended without changing segments; any other status may have written rows.
NOT_WRITTEN = ("running", "failed", "abandoned")


@dataclass
class Source:
    """What the warehouse holds: the derived schema, the rows to publish and the run they reflect."""

    segment_columns: list[Column]
    run_columns: list[Column]
    rows: int
    run_ids: list[str]  # runs with rows in segments
    run_id: str | None  # the latest run whose result segments holds
    runs: list[tuple]  # scoring_runs rows to publish (run_ids and run_id)
    archive: bool  # the warehouse keeps replaced and removed rows in segment_archive
    feed: bool  # the warehouse has a segment_changes feed

    @property
    def keys(self) -> list[str]:
        return [c.name for c in self.segment_columns if c.key]


def read_source(con: duckdb.DuckDBPyConnection) -> Source:
    segment_columns = warehouse_columns(con, "segments")
    if not any(c.key for c in segment_columns):
        raise ConfigError("sql/04_segments.sql declares no key (-- unique_key: customer_id); cannot publish")
    run_columns = warehouse_columns(con, "scoring_runs")
    # one scan of segments for both (an incremental publish reads little else from it)
    rows, run_ids = con.execute("select count(*), list(distinct run_id order by run_id) from segments").fetchall()[0]
    run_ids = list(run_ids or [])
    latest = con.execute(
        "select run_id from scoring_runs where list_contains($ids, run_id) or status not in "
        "(select unnest($done)) order by started_at desc, run_id desc limit 1",
        {"ids": run_ids, "done": list(NOT_WRITTEN)},
    ).fetchall()
    run_id = latest[0][0] if latest else None
    names = ", ".join(quote(c.name) for c in run_columns)
    runs = con.execute(
        f"select {names} from scoring_runs where list_contains($ids, run_id) order by run_id",
        {"ids": sorted(set(run_ids) | ({run_id} if run_id else set()))},
    ).fetchall()
    tables = {
        r[0]
        for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main' "
            "and table_name in ('segment_archive', 'segment_changes')"  # tables and views
        ).fetchall()
    }
    return Source(
        segment_columns,
        run_columns,
        rows,
        run_ids,
        run_id,
        runs,
        "segment_archive" in tables,
        "segment_changes" in tables,
    )


def quote(name: str) -> str:
    """A double-quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


class TargetCatalog:
    """Which of the publication's tables exist in the target, and their column names, read once: one catalog
    query on PostgreSQL (SQLAlchemy's reflection took about 20 ms of an incremental publish there); other
    dialects ask SQLAlchemy's inspector. Like the inspector's cache, the answers describe the target as it
    was when read, before the publication creates a table or adds a column.
    """

    def __init__(self, conn, schema: str | None, names: list[str]) -> None:
        import sqlalchemy as sa

        self.schema = schema
        self._columns: dict[str, list[str]] | None = None
        if conn.dialect.name != "postgresql":
            self._inspector = sa.inspect(conn)
            return
        where = "n.nspname = :schema" if schema else "pg_catalog.pg_table_is_visible(c.oid)"
        rows = conn.execute(
            sa.text(
                "select c.relname, a.attname from pg_catalog.pg_class c "
                "join pg_catalog.pg_namespace n on n.oid = c.relnamespace "
                "join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped "
                f"where c.relname = any(:names) and c.relkind in ('r', 'p', 'f', 'v', 'm') and {where} "
                "order by c.relname, a.attnum"
            ),
            {"names": names, **({"schema": schema} if schema else {})},
        ).fetchall()
        self._columns = {}
        for table, column in rows:
            self._columns.setdefault(table, []).append(column)

    def has_table(self, name: str) -> bool:
        if self._columns is None:
            return self._inspector.has_table(name, schema=self.schema)
        return name in self._columns

    def column_names(self, name: str) -> list[str]:
        if self._columns is None:
            return [c["name"] for c in self._inspector.get_columns(name, schema=self.schema)]
        return list(self._columns.get(name, []))
