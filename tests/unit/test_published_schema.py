"""The one DuckDB -> SQLAlchemy type mapping, rendered for PostgreSQL, SQLite and MySQL."""

from __future__ import annotations

import duckdb
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from mallscore.errors import ConfigError
from mallscore.published_schema import column_type, sa_table, warehouse_columns


@pytest.mark.parametrize(
    "duck, pg",
    [
        ("BIGINT", "BIGINT"),
        ("INTEGER", "INTEGER"),
        ("DOUBLE", "DOUBLE PRECISION"),
        ("BOOLEAN", "BOOLEAN"),
        ("VARCHAR", "TEXT"),
        ("TIMESTAMP", "TIMESTAMP WITHOUT TIME ZONE"),
        ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITH TIME ZONE"),
        ("DECIMAL(18,3)", "NUMERIC(18, 3)"),
    ],
)
def test_duckdb_types_render_as_postgresql_types(duck, pg):
    assert column_type(duck).compile(dialect=postgresql.dialect()) == pg


def test_a_text_key_is_bounded_where_the_database_needs_it_and_unknown_types_are_refused():
    assert column_type("VARCHAR", key=True).compile(dialect=mysql.dialect()) == "VARCHAR(255)"
    assert column_type("VARCHAR", key=True).compile(dialect=postgresql.dialect()) == "TEXT"
    with pytest.raises(ConfigError, match="INTERVAL"):
        column_type("INTERVAL")


def test_catalog_columns_keep_order_nullability_and_key():
    con = duckdb.connect()
    con.execute("create table runs (run_id varchar primary key, n bigint, note varchar not null)")
    columns = warehouse_columns(con, "runs")
    assert [(c.name, c.duck_type, c.nullable, c.key) for c in columns] == [
        ("run_id", "VARCHAR", False, True),
        ("n", "BIGINT", True, False),
        ("note", "VARCHAR", False, False),
    ]
    ddl = str(sa.schema.CreateTable(sa_table(sa.MetaData(), None, "t", columns)).compile(dialect=sqlite.dialect()))
    assert "run_id TEXT NOT NULL" in ddl and "n BIGINT," in ddl and "PRIMARY KEY (run_id)" in ddl
    with pytest.raises(ConfigError, match="no missing table"):
        warehouse_columns(con, "missing")
