"""The published schema, derived from the warehouse's catalog: one type mapping from DuckDB to any target.

``sql/03_scoring_runs.sql``, ``sql/04_segments.sql`` (and any table a publish
copies) define the columns once; publishing reads them from DuckDB's catalog
(``duckdb_columns()``, the primary key from ``duckdb_constraints()`` or the
file's ``-- unique_key:`` mark) and maps every type through
:func:`column_type` to SQLAlchemy, which renders PostgreSQL's DDL as well as
any other database's. A column added to the SQL is published without touching
Python.
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
    return [Column(name, dtype, bool(nullable) and name not in keys, name in keys) for name, dtype, nullable in rows]


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
