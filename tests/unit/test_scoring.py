"""The scoring run on real DuckDB files and real onnxruntime sessions: selection, contract, segments, runs."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import duckdb
import numpy as np
import pytest

from mallscore.errors import BadInputError, ConfigError
from mallscore.scoring import load_model, predict, rescore_customers, score_customers
from mallscore.settings import Settings
from tests.scoring_support import (
    FEATURES,
    TIERS,
    fit_pipeline,
    query,
    seed_customers,
    training_rows,
    write_model,
)


def execute(settings: Settings, sql: str, params: object = None) -> None:
    con = duckdb.connect(str(settings.warehouse))
    try:
        con.execute(sql, params) if params is not None else con.execute(sql)
    finally:
        con.close()


def counts(settings: Settings) -> dict:
    names = ("segments", "segment_archive", "segment_history", "rejected_rows", "scoring_runs")
    return {n: query(settings, f"select count(*) from {n}")[0][0] for n in names}


def test_onnx_probabilities_match_sklearn_on_thousands_of_rows(score_settings: Settings) -> None:
    write_model(score_settings.models_dir, "v1")
    model = load_model(score_settings)
    x, _ = training_rows(5000, seed=11)
    ours = predict(model, {name: x[:, [i]].astype(np.float32) for i, name in enumerate(FEATURES)})
    theirs = fit_pipeline(0).predict_proba(x)[:, 1]
    assert np.abs(ours - theirs).max() < 1e-5
    assert ((ours >= 0.5) == (theirs >= 0.5)).all()


def test_first_run_scores_everyone_and_a_rerun_adds_nothing(scored_setup: Settings) -> None:
    first = score_customers(scored_setup)
    assert (first["status"], first["mode"], first["rows_read"], first["rows_scored"], first["rows_rejected"]) == (
        "succeeded",
        "nightly",
        500,
        500,
        0,
    )
    before = counts(scored_setup)
    assert before["segments"] == 500 and before["segment_history"] == 500
    again = score_customers(scored_setup)
    assert (again["status"], again["rows_read"], again["rows_scored"]) == ("succeeded", 0, 0)
    after = counts(scored_setup)
    assert after == {**before, "scoring_runs": before["scoring_runs"] + 1}
    assert query(scored_setup, "select count(*) - count(distinct customer_id) from segments")[0][0] == 0


def test_changed_customers_are_rescored_and_their_old_rows_kept_in_history(scored_setup: Settings) -> None:
    first = score_customers(scored_setup)
    execute(
        scored_setup,
        "update raw_customers set age = 25, updated_at = updated_at + interval 1 day where customer_id in (3, 7)",
    )
    second = score_customers(scored_setup)
    assert second["rows_scored"] == 2
    current = dict(query(scored_setup, "select customer_id, run_id from segments where customer_id in (3, 7, 8)"))
    assert current == {3: second["run_id"], 7: second["run_id"], 8: first["run_id"]}
    history = query(
        scored_setup, "select customer_id, run_id from segment_history where customer_id in (3, 7) order by 1, 2"
    )
    assert sorted(history) == sorted(
        [(3, first["run_id"]), (3, second["run_id"]), (7, first["run_id"]), (7, second["run_id"])]
    )
    assert counts(scored_setup)["segments"] == 500
    assert query(scored_setup, "select count(*) from segment_history")[0][0] == 502


def test_a_new_champion_rescores_everyone_and_all_rescores_regardless(scored_setup: Settings) -> None:
    score_customers(scored_setup)
    write_model(scored_setup.models_dir, "v2", seed=5)
    switched = score_customers(scored_setup)
    assert (switched["model_version"], switched["rows_scored"]) == ("v2", 500)
    assert query(scored_setup, "select distinct model_version from segments") == [("v2",)]
    assert score_customers(scored_setup)["rows_read"] == 0
    forced = score_customers(scored_setup, mode="all")
    assert (forced["mode"], forced["rows_scored"]) == ("all", 500)
    # an explicit older model is "another model" for everyone scored by v2
    older = score_customers(scored_setup, model_version="v1")
    assert (older["model_version"], older["rows_scored"]) == ("v1", 500)
    assert counts(scored_setup)["segment_history"] == 2000
    assert query(scored_setup, "select count(*), count(distinct (run_id, customer_id)) from segment_history")[0] == (
        2000,
        2000,
    )


def test_new_customers_arriving_are_the_only_ones_scored(scored_setup: Settings) -> None:
    score_customers(scored_setup)
    seed_customers(scored_setup, known=0, new=25, seed=99)
    run = score_customers(scored_setup)
    assert run["rows_scored"] == 25
    assert query(
        scored_setup, "select min(customer_id), max(customer_id) from segments where run_id = ?", [run["run_id"]]
    ) == [(501, 525)]


def test_rows_breaking_the_contract_are_rejected_with_reasons_and_counts_add_up(scored_setup: Settings) -> None:
    execute(scored_setup, "update raw_customers set age = 90 where customer_id = 10")
    execute(scored_setup, "update raw_customers set annual_income = 'nan'::double where customer_id = 11")
    execute(scored_setup, "update raw_customers set annual_income = 'inf'::double where customer_id = 12")
    execute(scored_setup, "update raw_customers set annual_income = 1e39 where customer_id = 13")
    run = score_customers(scored_setup)
    assert (run["rows_read"], run["rows_scored"], run["rows_rejected"]) == (500, 496, 4)
    rejected = dict(
        query(scored_setup, "select customer_id, reason from rejected_rows where run_id = ?", [run["run_id"]])
    )
    assert rejected["10"] == "age 90.0 is above the model's range 18.0..70.0"
    assert "annual_income" in rejected["11"] and "not a finite float32" in rejected["11"]
    assert "not a finite float32" in rejected["12"] and "not a finite float32" in rejected["13"]
    assert query(scored_setup, "select count(*) from segments where customer_id in (10, 11, 12, 13)")[0][0] == 0
    assert query(scored_setup, "select count(*) from segments where run_id = ?", [run["run_id"]])[0][0] == 496
    assert all(math.isfinite(p) for (p,) in query(scored_setup, "select p_high_spender from segments"))
    # the same bad data is not rejected again every night; fixing it gets the customer scored
    assert score_customers(scored_setup)["rows_read"] == 0
    execute(
        scored_setup,
        "update raw_customers set age = 40, updated_at = updated_at + interval 1 day where customer_id = 10",
    )
    fixed = score_customers(scored_setup)
    assert (fixed["rows_scored"], fixed["rows_rejected"]) == (1, 0)
    assert counts(scored_setup)["rejected_rows"] == 4


def test_a_customer_who_becomes_invalid_loses_the_stale_segment_but_keeps_history(scored_setup: Settings) -> None:
    first = score_customers(scored_setup)
    execute(
        scored_setup,
        "update raw_customers set age = 95, updated_at = updated_at + interval 1 day where customer_id = 20",
    )
    second = score_customers(scored_setup)
    assert (second["rows_read"], second["rows_rejected"]) == (1, 1)
    assert query(scored_setup, "select count(*) from segments where customer_id = 20")[0][0] == 0
    assert query(scored_setup, "select run_id from segment_history where customer_id = 20") == [(first["run_id"],)]


def test_missing_values_of_a_required_feature_are_rejected(score_settings: Settings) -> None:
    seed_customers(score_settings, known=50, new=30)
    # the leaky "seed" spec needs the spending score, which new customers do not have yet
    write_model(
        score_settings.models_dir,
        "leaky",
        features=("age", "annual_income", "spending_score"),
        ranges={"spending_score": (1.0, 100.0)},
    )
    run = score_customers(score_settings)
    assert (run["rows_read"], run["rows_scored"], run["rows_rejected"]) == (80, 50, 30)
    assert query(score_settings, "select distinct reason from rejected_rows") == [("spending_score is missing",)]


def test_a_feature_column_missing_from_the_warehouse_stops_the_run_before_anything_is_written(
    score_settings: Settings,
) -> None:
    seed_customers(score_settings, known=20, new=0)
    write_model(score_settings.models_dir, "v9", features=("age", "annual_income", "loyalty_points"))
    with pytest.raises(ConfigError, match="no column 'loyalty_points'") as err:
        score_customers(score_settings)
    assert err.value.exit_code == 78
    assert counts(score_settings) == {
        "segments": 0,
        "segment_archive": 0,
        "segment_history": 0,
        "rejected_rows": 0,
        "scoring_runs": 0,
    }
    assert not score_settings.snapshot.exists()


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_tampered_model_is_refused_before_the_warehouse_is_touched(scored_setup: Settings) -> None:
    score_customers(scored_setup)
    model_file = scored_setup.models_dir / "default" / "v1" / "model.onnx"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    model_file.write_bytes(bytes(data))
    before = {p.name: _file_digest(p) for p in scored_setup.warehouse.parent.iterdir()}
    with pytest.raises(ConfigError, match="sha256") as err:
        score_customers(scored_setup, mode="all")
    assert err.value.exit_code == 78
    assert {p.name: _file_digest(p) for p in scored_setup.warehouse.parent.iterdir()} == before


def test_segments_follow_the_observed_score_where_known_and_the_probability_otherwise(scored_setup: Settings) -> None:
    run = score_customers(scored_setup)
    rows = query(
        scored_setup,
        """
        select s.customer_id, s.segment, s.p_high_spender, s.predicted_high_spender, s.basis, f.spending_score
        from segments s join features_customer f using (customer_id)""",
    )
    assert len(rows) == 500
    bases = {r[4] for r in rows}
    assert bases == {"observed", "predicted"}
    for _, segment, p, predicted, basis, score in rows:
        assert predicted == (p >= 0.5)
        if score is not None:
            assert basis == "observed"
            assert segment == next(t["name"] for t in TIERS if score >= t["min_score"])
        else:
            assert basis == "predicted"
            assert segment == next(t["name"] for t in TIERS if p >= t["min_p"])
    summary = query(scored_setup, "select segment, customers, share from segment_summary")
    assert sum(c for _, c, _ in summary) == 500
    assert abs(sum(s for _, _, s in summary) - 1.0) < 1e-9
    assert query(scored_setup, "select model_version, count(*) from segments group by 1") == [("v1", 500)]
    assert query(scored_setup, "select distinct run_id from segments") == [(run["run_id"],)]


def test_the_snapshot_holds_what_analysts_need_and_matches_the_warehouse(scored_setup: Settings) -> None:
    run = score_customers(scored_setup)
    assert Path(run["snapshot"]) == scored_setup.snapshot
    snap = duckdb.connect(str(scored_setup.snapshot), read_only=True)
    try:
        tables = {r[0] for r in snap.execute("select table_name from information_schema.tables").fetchall()}
        assert {"segments", "segment_summary", "segment_history", "scoring_runs", "features_customer"} <= tables
        assert snap.execute("select count(*) from segments").fetchall() == [(500,)]
        assert snap.execute("select status from scoring_runs where run_id = ?", [run["run_id"]]).fetchall() == [
            ("succeeded",)
        ]
        snap_summary = snap.execute("select segment, customers from segment_summary order by 1").fetchall()
    finally:
        snap.close()
    assert snap_summary == query(scored_setup, "select segment, customers from segment_summary order by 1")
    assert sorted(p.name for p in scored_setup.snapshot.parent.iterdir()) == [
        "mallscore.duckdb",
        "mallscore_analyst.duckdb",
    ]
    assert scored_setup.snapshot.stat().st_mode & 0o777 == 0o600  # owner only, even outside the CLI (no umask)


def test_a_stale_running_row_is_marked_abandoned_by_the_next_run(scored_setup: Settings) -> None:
    score_customers(scored_setup)
    execute(
        scored_setup,
        "insert into scoring_runs (run_id, mode, started_at, status) values ('Rdead', 'nightly', now(), 'running')",
    )
    score_customers(scored_setup)
    status, error = query(scored_setup, "select status, error from scoring_runs where run_id = 'Rdead'")[0]
    assert status == "abandoned" and "before the run finished" in error


def test_rescore_reports_known_rejected_and_unknown_ids_without_writing(scored_setup: Settings) -> None:
    score_customers(scored_setup)
    execute(scored_setup, "update raw_customers set age = 99 where customer_id = 2")
    before = counts(scored_setup)
    result = rescore_customers(scored_setup, [1, 2, 450, 123456])
    by_id = {c["customer_id"]: c for c in result["customers"]}
    assert result["unknown"] == [123456] and result["run_id"] is None
    assert by_id[2]["status"] == "rejected" and "above the model's range" in by_id[2]["reason"]
    stored = dict(query(scored_setup, "select customer_id, p_high_spender from segments where customer_id in (1, 450)"))
    assert by_id[1]["p_high_spender"] == stored[1] and by_id[450]["p_high_spender"] == stored[450]
    assert by_id[1]["basis"] == "observed" and by_id[450]["basis"] == "predicted"
    assert counts(scored_setup) == before
    with pytest.raises(BadInputError, match="no such customer"):
        rescore_customers(scored_setup, [777777])


def test_rescore_write_updates_segments_as_an_adhoc_run(scored_setup: Settings) -> None:
    first = score_customers(scored_setup)
    result = rescore_customers(scored_setup, [5, 6, 999999], write=True)
    assert result["unknown"] == [999999]
    run = query(scored_setup, "select mode, status, rows_scored from scoring_runs where run_id = ?", [result["run_id"]])
    assert run == [("adhoc", "succeeded", 2)]
    assert dict(query(scored_setup, "select customer_id, run_id from segments where customer_id in (5, 6, 7)")) == {
        5: result["run_id"],
        6: result["run_id"],
        7: first["run_id"],
    }
    assert counts(scored_setup)["segment_history"] == 502


def test_segment_summary_is_read_from_the_snapshot(scored_setup: Settings) -> None:
    from mallscore.errors import InputMissingError
    from mallscore.scoring import segment_summary

    with pytest.raises(InputMissingError, match="no analyst snapshot"):
        segment_summary(scored_setup)
    score_customers(scored_setup)
    rows = segment_summary(scored_setup)
    assert sum(r["customers"] for r in rows) == 500
    assert [r["segment"] for r in rows] == [s for (s,) in query(scored_setup, "select segment from segment_summary")]


def test_rescoring_everyone_under_a_small_memory_cap_does_not_run_out_of_memory(tmp_path: Path) -> None:
    """A new model replaces every segment: archiving them joins the segments with the candidates twice in one
    transaction (in ranges); under the job's cap alone that ran out of memory ("failed to pin block"), 3M
    customers at 64MB as 150k at 12MB here (8MB left the first run, which writes top_reason and the groups
    too, at the edge). `--all` then copies every segment without a join, under the same cap."""
    from mallscore.synth import synth_customers
    from mallscore.warehouse import build, connect

    settings = Settings(warehouse=tmp_path / "w.duckdb", models_dir=tmp_path / "models", memory_limit="12MB")
    con = connect(settings.warehouse)
    build(con)
    synth_customers(con, 150_000, seed=1, new=True)
    con.close()
    write_model(settings.models_dir, "v1")
    assert score_customers(settings, publish=False)["rows_scored"] == 150_000
    write_model(settings.models_dir, "v2", seed=5)
    switched = score_customers(settings, publish=False)
    assert (switched["status"], switched["model_version"], switched["rows_scored"]) == ("succeeded", "v2", 150_000)
    again = score_customers(settings, mode="all", publish=False)
    assert (again["status"], again["rows_scored"]) == ("succeeded", 150_000)
    assert query(settings, "select count(*), count(distinct archived_by_run) from segment_archive") == [(300_000, 2)]


@pytest.mark.parametrize("chunk_rows", [1_000_000, 37])  # one range, or 14 ranges for 500 rows written
def test_replacing_segments_in_ranges_archives_every_replaced_row_once(
    scored_setup: Settings, monkeypatch: pytest.MonkeyPatch, chunk_rows: int
) -> None:
    from mallscore.scoring import memory

    monkeypatch.setattr(memory, "REPLACE_CHUNK_ROWS", chunk_rows)
    first = score_customers(scored_setup)
    before = query(scored_setup, "select * exclude (top_reason) from segments order by customer_id")
    # a few changed customers (nightly), everyone under a new model, then everyone again (--all)
    execute(
        scored_setup,
        "update raw_customers set age = age + 1, updated_at = updated_at + interval 1 day where customer_id % 50 = 7",
    )
    nightly = score_customers(scored_setup)
    changed = query(scored_setup, "select count(*) from raw_customers where customer_id % 50 = 7")[0][0]
    assert nightly["rows_scored"] == changed > 0
    archived = query(
        scored_setup, "select count(*) from segment_archive where archived_by_run = ?", [nightly["run_id"]]
    )
    assert archived == [(changed,)]
    # every changed customer's older row was archived once and left segments: one current row per customer
    assert query(scored_setup, "select count(*), count(distinct customer_id) from segments") == [(500, 500)]
    assert query(
        scored_setup,
        "select count(*) from segment_archive a join segments s using (customer_id) "
        "where a.archived_by_run = ? and a.run_id = ? and s.run_id = ?",
        [nightly["run_id"], first["run_id"], nightly["run_id"]],
    ) == [(changed,)]
    # a new model rescores everyone: 500 rows written, archived and deleted range by range
    write_model(scored_setup.models_dir, "v2", seed=5)
    switched = score_customers(scored_setup)
    assert switched["rows_scored"] == 500
    by_run = "select count(*), count(distinct customer_id) from segment_archive where archived_by_run = ?"
    assert query(scored_setup, by_run, [switched["run_id"]]) == [(500, 500)]
    assert query(scored_setup, "select count(*), count(distinct customer_id) from segments") == [(500, 500)]
    everyone = score_customers(scored_setup, mode="all")
    assert everyone["rows_scored"] == first["rows_scored"] == 500
    assert counts(scored_setup)["segments"] == 500
    assert query(scored_setup, "select count(distinct run_id) from segments") == [(1,)]
    assert query(scored_setup, by_run, [everyone["run_id"]]) == [(500, 500)]
    # the first run's rows are all in the archive, unchanged, each once
    first_rows = query(
        scored_setup,
        "select * exclude (top_reason, archived_by_run) from segment_archive where run_id = ? order by customer_id",
        [first["run_id"]],
    )
    assert first_rows == before
    assert counts(scored_setup)["segment_history"] == 500 + changed + 500 + 500


def test_replace_ranges_cover_every_id_once_even_at_the_ends_of_bigint() -> None:
    from mallscore.scoring.memory import replace_ranges

    con = duckdb.connect()
    try:
        con.execute("create table segments (customer_id bigint)")
        assert replace_ranges(con, 10) == []
        ids = [-(2**63), -5, 0, 3, 2**40, 2**63 - 2, 2**63 - 1]
        con.execute("insert into segments select unnest(?)", [ids])
        assert replace_ranges(con, 0) == []
        from mallscore.scoring import memory

        for chunk in (1, 2, 3, 10**9):
            memory.REPLACE_CHUNK_ROWS, saved = chunk, memory.REPLACE_CHUNK_ROWS
            try:
                ranges = replace_ranges(con, len(ids))
            finally:
                memory.REPLACE_CHUNK_ROWS = saved
            assert ranges[0][0] == ids[0] and ranges[-1][1] == ids[-1]
            assert all(a <= b for a, b in ranges) and all(b + 1 == c for (_, b), (c, _) in zip(ranges, ranges[1:]))
            assert len(ranges) == min(len(ids), -(-len(ids) // chunk)) or chunk == 10**9
            assert sum(1 for i in ids for a, b in ranges if a <= i <= b) == len(ids)
    finally:
        con.close()
