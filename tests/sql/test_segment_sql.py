"""The segment relations: segments + segment_archive = segment_history; segment_summary per segment."""

from __future__ import annotations

import pytest

from mallscore.errors import ConfigError
from mallscore.warehouse import build, connect

ROW = "(?, ?, ?, ?, ?, 'v1', ?, timestamp '2026-01-01 02:00', timestamp '2026-01-01 00:00')"
COLUMNS = (
    "customer_id, segment, p_high_spender, predicted_high_spender, basis, model_version, run_id, scored_at, "
    "customer_updated_at"
)


def _insert(con, table: str, rows: list[tuple]) -> None:
    for row in rows:
        con.execute(f"insert into {table} ({COLUMNS}) values {ROW}", list(row))


def test_history_is_archive_plus_current_once_each(tmp_path) -> None:
    con = connect(tmp_path / "w.duckdb")
    try:
        build(con)
        _insert(
            con,
            "segment_archive",
            [(1, "low", 0.2, False, "predicted", "R1"), (2, "top", 0.9, True, "predicted", "R1")],
        )
        _insert(
            con,
            "segments",
            [
                (1, "top", 0.8, True, "predicted", "R2"),
                (2, "top", 0.9, True, "observed", "R1b"),
                (3, "high", 0.6, True, "predicted", "R2"),
            ],
        )
        history = con.execute("select run_id, customer_id, segment from segment_history order by 2, 1").fetchall()
        assert history == [("R1", 1, "low"), ("R2", 1, "top"), ("R1", 2, "top"), ("R1b", 2, "top"), ("R2", 3, "high")]
        columns = [r[0] for r in con.execute("describe segment_history").fetchall()]
        assert columns[:8] == [
            "run_id",
            "customer_id",
            "segment",
            "p_high_spender",
            "predicted_high_spender",
            "basis",
            "model_version",
            "scored_at",
        ]
    finally:
        con.close()


def test_segment_summary_counts_means_and_shares_current_segments_only(tmp_path) -> None:
    con = connect(tmp_path / "w.duckdb")
    try:
        build(con)
        _insert(
            con,
            "segments",
            [
                (1, "top", 0.9, True, "predicted", "R2"),
                (2, "top", 0.7, True, "predicted", "R2"),
                (3, "low", 0.1, False, "observed", "R2"),
                (4, "high", 0.6, True, "predicted", "R2"),
            ],
        )
        _insert(con, "segment_archive", [(1, "low", 0.2, False, "predicted", "R1")])
        summary = con.execute(
            "select segment, customers, round(mean_p_high_spender, 6), share from segment_summary"
        ).fetchall()
        assert summary == [("top", 2, 0.8, 0.5), ("high", 1, 0.6, 0.25), ("low", 1, 0.1, 0.25)]  # ordered by mean p
    finally:
        con.close()


def test_a_warehouse_built_before_segment_history_became_a_view_is_upgraded(tmp_path) -> None:
    con = connect(tmp_path / "w.duckdb")
    try:
        con.execute("create table segment_history (run_id varchar, customer_id bigint)")  # the foundation's table
        build(con)
        kind = con.execute(
            "select table_type from information_schema.tables where table_name = 'segment_history'"
        ).fetchall()
        assert kind == [("VIEW",)]
    finally:
        con.close()
    con = connect(tmp_path / "x.duckdb")
    try:
        con.execute("create table segment_history (run_id varchar, customer_id bigint)")
        con.execute("insert into segment_history values ('R1', 1)")
        with pytest.raises(ConfigError, match="segment_history is now a view"):
            build(con)  # a non-empty table is never dropped
        assert con.execute("select count(*) from segment_history").fetchall() == [(1,)]
    finally:
        con.close()
