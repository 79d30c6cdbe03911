"""The segment change feed: written by the run, in its transaction, exactly the customers whose segment moved."""

from __future__ import annotations

import duckdb
import pytest

from mallscore.scoring import score_customers
from mallscore.settings import Settings
from tests.scoring_support import query, seed_customers, write_model


def _execute(settings: Settings, sql: str) -> None:
    con = duckdb.connect(str(settings.warehouse))
    try:
        con.execute(sql)
    finally:
        con.close()


def _segments(settings: Settings) -> dict[int, tuple]:
    rows = query(settings, "select customer_id, segment, predicted_high_spender, p_high_spender from segments")
    return {r[0]: r[1:] for r in rows}


def _feed(settings: Settings, run_id: str) -> dict[int, tuple]:
    rows = query(
        settings,
        "select customer_id, change, previous_segment, segment, previous_p_high_spender, p_high_spender "
        "from segment_changes where run_id = ?",
        [run_id],
    )
    return {r[0]: r[1:] for r in rows}


def test_first_run_feeds_everyone_as_new_and_a_rerun_adds_nothing(scored_setup: Settings) -> None:
    first = score_customers(scored_setup, publish=False)
    feed = _feed(scored_setup, first["run_id"])
    segments = _segments(scored_setup)
    assert feed.keys() == segments.keys() and len(feed) == 500
    assert {row[0] for row in feed.values()} == {"new"}
    assert all(feed[c][1] is None and feed[c][2] == segments[c][0] and feed[c][4] == segments[c][2] for c in feed)
    again = score_customers(scored_setup, publish=False)
    assert again["rows_scored"] == 0 and _feed(scored_setup, again["run_id"]) == {}
    assert query(scored_setup, "select count(*) from segment_changes") == [(500,)]


def test_changed_customers_are_exactly_those_whose_segment_or_label_moved(scored_setup: Settings) -> None:
    score_customers(scored_setup, publish=False)
    before = _segments(scored_setup)
    # move the ages of 40 customers (some change tier, others only their probability) and rescore all with v2
    _execute(
        scored_setup,
        "update raw_customers set age = 69, updated_at = updated_at + interval 1 day where customer_id <= 40",
    )
    write_model(scored_setup.models_dir, "v2", seed=5)
    run = score_customers(scored_setup, publish=False)
    after = _segments(scored_setup)
    moved = {c for c in after if after[c][:2] != before[c][:2]}
    feed = _feed(scored_setup, run["run_id"])
    assert run["rows_scored"] == 500 and 0 < len(moved) < 500  # the test data really has both kinds
    assert feed.keys() == moved
    assert all(feed[c][0] == "changed" and feed[c][1:3] == (before[c][0], after[c][0]) for c in moved)
    assert all(feed[c][3] == before[c][2] and feed[c][4] == after[c][2] for c in moved)
    assert any(after[c][2] != before[c][2] for c in set(after) - moved)  # probability moved, not in the feed


@pytest.mark.parametrize("engine", ["onnx", "sql"])
def test_new_customers_are_new_and_a_customer_whose_data_breaks_the_contract_is_removed(
    scored_setup: Settings, engine: str
) -> None:
    first = score_customers(scored_setup, publish=False)
    seed_customers(scored_setup, known=0, new=10, seed=42)
    _execute(
        scored_setup,
        "update raw_customers set age = 95, updated_at = updated_at + interval 1 day where customer_id = 7",
    )
    previous = _segments(scored_setup)[7]
    run = score_customers(scored_setup, publish=False, engine=engine)
    feed = _feed(scored_setup, run["run_id"])
    assert {c for c, row in feed.items() if row[0] == "new"} == set(range(501, 511))
    assert feed[7] == ("removed", previous[0], None, previous[2], None)
    assert (run["rows_scored"], run["rows_rejected"]) == (10, 1)
    # the rejected customer's segment moved to the archive (archived after the run's own rows were written)
    assert 7 not in _segments(scored_setup) and len(_segments(scored_setup)) == 509
    assert query(scored_setup, "select customer_id, run_id, archived_by_run from segment_archive") == [
        (7, first["run_id"], run["run_id"])
    ]


def test_all_rebuilds_segments_and_withdraws_a_customer_who_left_the_feature_table(scored_setup: Settings) -> None:
    first = score_customers(scored_setup, publish=False)
    before = _segments(scored_setup)
    _execute(scored_setup, "delete from raw_customers where customer_id in (11, 12)")
    nightly = score_customers(scored_setup, publish=False)  # a nightly run scores no one, and keeps both
    assert nightly["rows_read"] == 0 and _segments(scored_setup) == before
    rebuilt = score_customers(scored_setup, mode="all", publish=False)
    after = _segments(scored_setup)
    feed = _feed(scored_setup, rebuilt["run_id"])
    assert (rebuilt["rows_scored"], rebuilt["rows_rejected"]) == (498, 0)
    assert after.keys() == before.keys() - {11, 12}
    assert {c: feed[c] for c in (11, 12)} == {c: ("removed", before[c][0], None, before[c][2], None) for c in (11, 12)}
    assert {row[0] for c, row in feed.items() if c not in (11, 12)} <= {"changed"}  # same model: no change
    archived = query(
        scored_setup,
        "select count(*), count(distinct customer_id), min(run_id), max(run_id), min(archived_by_run), "
        "max(archived_by_run) from segment_archive",
    )
    assert archived == [(500, 500, first["run_id"], first["run_id"], rebuilt["run_id"], rebuilt["run_id"])]
    assert query(scored_setup, "select count(*) from segment_history") == [(998,)]


def test_a_failed_run_leaves_no_feed(scored_setup: Settings) -> None:
    score_customers(scored_setup, publish=False)
    # segments that refuse any later run's rows (on scored_at: a label column such as model_version cannot
    # carry a CHECK, the run alters its type, mallscore.labels): a v2 run fails after archiving what it replaces
    cutoff = query(scored_setup, "select max(scored_at) from segments")[0][0]
    columns = ", ".join(
        f"{name} {dtype}"
        for name, dtype in query(
            scored_setup,
            "select column_name, data_type from duckdb_columns() where table_name = 'segments' order by column_index",
        )
    )
    _execute(scored_setup, "create table segments_copy as select * from segments")
    _execute(scored_setup, "drop table segments")
    _execute(scored_setup, f"create table segments ({columns}, check (scored_at <= '{cutoff.isoformat()}'))")
    _execute(scored_setup, "insert into segments select * from segments_copy")
    write_model(scored_setup.models_dir, "v2", seed=5)
    with pytest.raises(duckdb.ConstraintException):
        score_customers(scored_setup, publish=False)
    failed = query(scored_setup, "select run_id, status from scoring_runs order by started_at desc limit 1")[0]
    assert failed[1] == "failed"
    assert _feed(scored_setup, failed[0]) == {}
    assert query(scored_setup, "select count(*), count(distinct run_id) from segment_changes") == [(500, 1)]
    assert query(scored_setup, "select count(*) from segment_archive") == [(0,)]
