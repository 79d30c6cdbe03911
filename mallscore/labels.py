"""Label columns: the few-valued text columns of the big tables, stored as DuckDB ENUM types.

``segment``, ``basis``, ``model_version``, ``top_reason``, ``behaviour_group``
and ``behaviour_model_version`` hold a handful of distinct texts (the card's
tier names, observed or predicted, the model's version and reason words, the
groups model's names and version) over millions of rows. Stored as VARCHAR,
each costs the nightly run about as much as the drift and the reasons
themselves: inserting 10M rows with one 35-character label column took 0.79 s
against 0.44 s with the column NULL (warehouse storage format v1.1.0, one
column, median of 3). Stored as an ENUM the same insert took 0.50 s, the
labels still arriving as text and cast by the INSERT; 0.44 s when they arrive
as ENUM values. With ``segment``, ``basis`` and ``model_version`` as ENUMs the
10M-customer nightly run took 3.2 s instead of 4.5 s. (``run_id`` stays text:
it is new every night.)

An ENUM reads as text in every client (the DuckDB CLI and Python, DuckDB 1.1
and later opening the analyst snapshot, DBeaver): ``top_reason = '...'``,
``like``, ``group by`` and ``order by`` work as on text (the labels are kept in
alphabetical order, so ordering is alphabetical too). pandas shows it as a
category and Arrow as a dictionary; the PostgreSQL publish and the exports
write it as text.

The vocabulary grows with the models. Before a run writes, :func:`cover`
makes the column's ENUM hold every label the run can write: when one is new,
it creates ``<column>_labels_<n+1>`` holding the old labels and the new ones,
alters the column in ``segments`` and ``segment_archive`` to it (in the run's
transaction: a failed run leaves the old type), re-creates the views over them
(DuckDB 1.x clients refuse a view whose stored types no longer match) and
drops the old type. That rewrites the column (once per new model, not per
night). A warehouse whose
column is still VARCHAR (made before this) is converted the same way on its
next run that writes a label, its labels read from the rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb

from mallscore.warehouse import refresh_views

TABLES = ("segments", "segment_archive")  # every table holding the label columns, under the same names
COLUMNS = ("segment", "basis", "model_version", "top_reason", "behaviour_group", "behaviour_model_version")


def type_prefix(column: str) -> str:
    """The name of ``column``'s ENUM types, before the generation number."""
    return f"{column}_labels_"


def _quote(label: str) -> str:
    return "'" + label.replace("'", "''") + "'"


def _generations(con: duckdb.DuckDBPyConnection, column: str) -> list[tuple[int, str]]:
    """``(n, name)`` of every ``<column>_labels_<n>`` type in the catalog, oldest first."""
    prefix = type_prefix(column)
    names = con.execute(
        "select type_name from duckdb_types() where schema_name = 'main' and starts_with(type_name, $p)",
        {"p": prefix},
    ).fetchall()
    found = [(int(n[len(prefix) :]), n) for (n,) in names if n[len(prefix) :].isdigit()]
    return sorted(found)


def type_name(con: duckdb.DuckDBPyConnection, column: str) -> str | None:
    """The ENUM type ``column`` holds in every table (its newest generation), None while it is still text."""
    kinds = con.execute(
        "select data_type from duckdb_columns() "
        "where schema_name = 'main' and column_name = $c and list_contains($t, table_name)",
        {"c": column, "t": list(TABLES)},
    ).fetchall()
    if len(kinds) != len(TABLES) or not all(t.startswith("ENUM(") for (t,) in kinds):
        return None
    generations = _generations(con, column)
    return generations[-1][1] if generations else None


def current_labels(con: duckdb.DuckDBPyConnection, column: str) -> tuple[bool, set[str]]:
    """(whether ``column`` is an ENUM in every table, the labels it holds or can hold)."""
    name = type_name(con, column)
    if name is not None:
        return True, set(con.execute(f"select enum_range(null::{name})").fetchall()[0][0])
    seen: set[str] = set()
    for table in TABLES:
        rows = con.execute(f"select distinct cast({column} as varchar) from {table} where {column} is not null")
        seen |= {r[0] for r in rows.fetchall()}
    return False, seen


def cover(con: duckdb.DuckDBPyConnection, column: str, labels: Iterable[str | None]) -> bool:
    """Make ``column`` (in every table of :data:`TABLES`) an ENUM holding ``labels``; True when it changed.

    Runs in the caller's transaction, before the run writes a label: a text
    that is not one of the ENUM's labels fails the INSERT's cast. Costs a few
    catalog queries when nothing is new (the six columns: about 15 ms a run).
    """
    wanted = {label for label in labels if label is not None}
    is_enum, held = current_labels(con, column)
    if (is_enum and wanted <= held) or not held | wanted:
        return False  # covered; or nothing to hold yet (an ENUM needs a label: the column stays as it is)
    generations = _generations(con, column)
    name = f"{type_prefix(column)}{generations[-1][0] + 1 if generations else 1}"
    values = ", ".join(_quote(label) for label in sorted(held | wanted))
    con.execute(f"create type {name} as enum ({values})")
    for table in TABLES:
        con.execute(f"alter table {table} alter column {column} set data type {name}")
    refresh_views(con)  # the views over these tables store the new type (DuckDB 1.x clients check it)
    for _, old in generations:
        con.execute(f"drop type if exists {old}")
    return True
