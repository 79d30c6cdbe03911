"""mallscore.labels: the label columns become ENUMs that always hold every label a run writes."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from mallscore import labels
from mallscore.warehouse import build, create_database


def _warehouse(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """A real warehouse (every relation of sql/, label columns still VARCHAR as sql/ creates them)."""
    path = tmp_path / "w.duckdb"
    create_database(path)
    con = duckdb.connect(str(path))
    build(con, check=False)
    return con


def _insert(con, table: str, customer_id: int, **values: str | None) -> None:
    """One row of ``table`` with ``values`` in its label columns (the other columns: any valid value)."""
    con.execute(
        f"insert into {table} by name select $id as customer_id, 'loyalty' as segment, 0.6 as p_high_spender, "
        "true as predicted_high_spender, 'predicted' as basis, 'v1' as model_version, 'r1' as run_id, "
        "now()::timestamp as scored_at, now()::timestamp as customer_updated_at, "
        + ", ".join(f"${c} as {c}" for c in values),
        {"id": customer_id, **values},
    )


def _types(con, column: str) -> list[str]:
    """The column's type in each table holding it."""
    return [
        r[0]
        for r in con.execute(
            "select data_type from duckdb_columns() where column_name = $c and list_contains($t, table_name) "
            "order by table_name",
            {"c": column, "t": list(labels.TABLES)},
        ).fetchall()
    ]


def test_a_text_column_becomes_an_enum_holding_its_rows_labels_and_the_new_ones(tmp_path: Path) -> None:
    con = _warehouse(tmp_path)
    _insert(con, "segments", 1, top_reason="b: old")
    _insert(con, "segments", 2, top_reason=None)
    _insert(con, "segment_archive", 3, top_reason="a: archived")

    assert labels.cover(con, "top_reason", ["c: new", "b: old", None])

    assert _types(con, "top_reason") == ["ENUM('a: archived', 'b: old', 'c: new')"] * 2  # sorted: order by = abc
    rows = con.execute(
        "select customer_id, top_reason from segments union all select customer_id, top_reason "
        "from segment_archive order by customer_id"
    ).fetchall()
    assert rows == [(1, "b: old"), (2, None), (3, "a: archived")]
    _insert(con, "segments", 4, top_reason="c: new")  # text is cast on insert
    with pytest.raises(duckdb.ConversionException):
        _insert(con, "segments", 5, top_reason="d: unknown")
    # the views over the tables were re-created with the new type (DuckDB 1.x clients compare them)
    view = "select data_type from duckdb_columns() where table_name = 'segment_history' and column_name = 'top_reason'"
    assert con.execute(view).fetchall()[0][0] == _types(con, "top_reason")[0]


def test_covered_labels_change_nothing_and_a_new_one_makes_the_next_generation(tmp_path: Path) -> None:
    con = _warehouse(tmp_path)
    assert labels.cover(con, "behaviour_group", ["x", "it's"])
    _insert(con, "segment_archive", 1, behaviour_group="it's")
    assert not labels.cover(con, "behaviour_group", ["x"])
    assert labels.current_labels(con, "behaviour_group") == (True, {"x", "it's"})

    assert labels.cover(con, "behaviour_group", ["y"])

    names = [
        r[0] for r in con.execute("select type_name from duckdb_types() where type_name like 'behaviour%'").fetchall()
    ]
    assert names == ["behaviour_group_labels_2"]  # the old generation is dropped
    assert _types(con, "behaviour_group") == ["ENUM('it''s', 'x', 'y')"] * 2
    assert con.execute("select behaviour_group from segment_archive").fetchall() == [("it's",)]


def test_a_rolled_back_run_leaves_the_old_type(tmp_path: Path) -> None:
    con = _warehouse(tmp_path)
    labels.cover(con, "top_reason", ["a"])
    con.begin()
    labels.cover(con, "top_reason", ["b"])
    con.rollback()
    assert _types(con, "top_reason") == ["ENUM('a')"] * 2
    assert labels.current_labels(con, "top_reason") == (True, {"a"})


def test_no_label_to_hold_leaves_the_text_column(tmp_path: Path) -> None:
    con = _warehouse(tmp_path)
    assert not labels.cover(con, "behaviour_model_version", [None])
    assert _types(con, "behaviour_model_version") == ["VARCHAR"] * 2
