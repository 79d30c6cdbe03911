"""`mallscore score --engine sql` against `mallscore score` (onnxruntime) on copies of one warehouse."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import duckdb

from mallscore.settings import Settings
from tests.scoring_support import (
    REPO,
    cli_env,
    query,
    run_cli,
    write_model,
)

SEGMENT_COLUMNS = (
    "customer_id, segment, basis, predicted_high_spender, p_high_spender, model_version, customer_updated_at"
)


def _execute(settings: Settings, sql: str) -> None:
    con = duckdb.connect(str(settings.warehouse))
    try:
        con.execute(sql)
    finally:
        con.close()


def _twin(settings: Settings, name: str) -> Settings:
    """A copy of the warehouse folder (same models), for the other engine."""
    folder = settings.warehouse.parent.with_name(name)
    shutil.copytree(settings.warehouse.parent, folder)
    return Settings(
        warehouse=folder / settings.warehouse.name, models_dir=settings.models_dir, lock_timeout=settings.lock_timeout
    )


def _segments(settings: Settings) -> dict:
    return {r[0]: r[1:] for r in query(settings, f"select {SEGMENT_COLUMNS} from segments")}


def _rejected(settings: Settings) -> list:
    return query(
        settings, "select customer_id, raw_values, reason from rejected_rows where run_id is not null order by 1"
    )


def _assert_same_segments(onnx: Settings, sql: Settings) -> None:
    a, b = _segments(onnx), _segments(sql)
    assert a.keys() == b.keys()
    for cid in a:
        (seg_a, basis_a, label_a, p_a, *rest_a), (seg_b, basis_b, label_b, p_b, *rest_b) = a[cid], b[cid]
        assert (seg_a, basis_a, label_a, rest_a) == (seg_b, basis_b, label_b, rest_b), cid
        assert abs(p_a - p_b) < 1e-6, cid


def _score(settings: Settings, *args: str) -> dict:
    done = run_cli(settings, "score", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_engine_sql_equals_onnxruntime_run_for_run(scored_setup: Settings) -> None:
    _execute(scored_setup, "update raw_customers set age = 90 where customer_id = 10")
    _execute(scored_setup, "update raw_customers set annual_income = 'nan'::double where customer_id = 11")
    _execute(scored_setup, "update raw_customers set annual_income = 1e39 where customer_id = 12")
    twin = _twin(scored_setup, "wh-sql")

    runs = []
    for step in ("first", "changed", "new model", "all"):
        if step == "changed":  # some customers change, one becomes invalid, a few arrive
            for s in (scored_setup, twin):
                _execute(
                    s,
                    "update raw_customers set age = 33, updated_at = updated_at + interval 1 day "
                    "where customer_id in (3, 4, 450)",
                )
                _execute(
                    s,
                    "update raw_customers set age = 95, updated_at = updated_at + interval 1 day where customer_id = 5",
                )
                _execute(
                    s,
                    "insert into raw_customers select customer_id + 1000, gender, age, annual_income, null, load_id, "
                    "updated_at from raw_customers where customer_id <= 7",
                )
        if step == "new model":
            write_model(scored_setup.models_dir, "v2", seed=4, threshold=0.45)
        extra = ("--all",) if step == "all" else ()
        onnx, sql = _score(scored_setup, *extra), _score(twin, "--engine", "sql", *extra)
        runs.append((onnx, sql))
        assert (onnx["engine"], sql["engine"]) == ("onnx", "sql")
        for key in ("status", "mode", "model_version", "model_sha256", "rows_read", "rows_scored", "rows_rejected"):
            assert onnx[key] == sql[key], (step, key)
        _assert_same_segments(scored_setup, twin)
        assert _rejected(scored_setup) == _rejected(twin)
        for table in ("segment_archive", "segment_history"):
            count = f"select count(*), count(distinct customer_id) from {table}"
            assert query(scored_setup, count) == query(twin, count), (step, table)
        assert sql["snapshot"] == str(twin.snapshot) and twin.snapshot.exists()

    first, changed, new_model, everyone = (o for o, _ in runs)
    assert (first["rows_scored"], first["rows_rejected"]) == (497, 3)
    assert (changed["rows_read"], changed["rows_scored"], changed["rows_rejected"]) == (
        11,
        9,
        2,
    )  # 1005 copies 5, now 95
    assert new_model["model_version"] == "v2" and new_model["rows_scored"] == 502
    assert everyone["mode"] == "all" and everyone["rows_read"] == 507
    assert query(twin, "select engine, count(*) from scoring_runs group by 1") == [("sql", 4)]
    listed = json.loads(run_cli(twin, "runs", "--json").stdout)
    assert [r["engine"] for r in listed] == ["sql"] * 4


def test_a_rerun_with_engine_sql_adds_nothing_and_rescore_agrees(scored_setup: Settings) -> None:
    first = _score(scored_setup, "--engine", "sql")
    assert (first["rows_scored"], first["engine"]) == (500, "sql")
    again = _score(scored_setup, "--engine", "sql")
    assert (again["rows_read"], again["rows_scored"]) == (0, 0)
    assert _score(scored_setup)["rows_read"] == 0  # the other engine sees nothing to do either
    rescored = json.loads(run_cli(scored_setup, "rescore", "450", "--json").stdout)["customers"][0]
    stored = query(scored_setup, "select p_high_spender, segment, basis from segments where customer_id = 450")[0]
    assert abs(rescored["p_high_spender"] - stored[0]) < 1e-6 and (rescored["segment"], rescored["basis"]) == stored[1:]


def test_an_unknown_engine_is_a_usage_error(scored_setup: Settings) -> None:
    done = run_cli(scored_setup, "score", "--engine", "tensorflow")
    assert done.returncode == 2 and "onnx or sql" in done.stderr
    assert query(scored_setup, "select count(*) from scoring_runs") == [(0,)]


def test_a_warehouse_from_before_the_engine_column_is_upgraded_by_a_run(scored_setup: Settings) -> None:
    _execute(scored_setup, "drop table scoring_runs")
    _execute(
        scored_setup,
        "create table scoring_runs (run_id varchar primary key, mode varchar not null, "
        "started_at timestamp not null, finished_at timestamp, status varchar not null, "
        "model_version varchar, model_sha256 varchar, rows_read bigint, rows_scored bigint, "
        "rows_rejected bigint, error varchar)",
    )
    _execute(
        scored_setup,
        "insert into scoring_runs values ('R0', 'nightly', now(), now(), 'succeeded', 'v0', 'x', 0, 0, 0, null)",
    )
    old = json.loads(run_cli(scored_setup, "runs", "--json").stdout)  # read-only: no upgrade, engine unknown
    assert [(r["run_id"], r["engine"]) for r in old] == [("R0", None)]
    run = _score(scored_setup, "--engine", "sql")
    assert run["engine"] == "sql" and run["rows_scored"] == 500
    assert query(scored_setup, "select run_id, engine from scoring_runs order by started_at") == [
        ("R0", None),
        (run["run_id"], "sql"),
    ]


_MODULES = textwrap.dedent("""
    import json, runpy, sys
    sys.argv = ["mallscore", *sys.argv[1:]]
    code = 0
    try:
        runpy.run_module("mallscore", run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    print(json.dumps({"code": code, "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
""")


def _modules_loaded(settings: Settings, *args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", _MODULES, *args],
        env=cli_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] in (0, None), done.stderr
    return set(report["loaded"])


def test_onnx_is_imported_only_by_the_sql_engine_and_sklearn_by_neither(scored_setup: Settings) -> None:
    default = _modules_loaded(scored_setup, "score", "--all")
    spark = {"pyspark", "py4j"}  # the optional extra: installed in CI, never imported by the nightly path
    assert "onnxruntime" in default and not default & {"onnx", "sklearn", "skl2onnx", "matplotlib", *spark}
    in_engine = _modules_loaded(scored_setup, "score", "--all", "--engine", "sql")
    assert "onnx" in in_engine and not in_engine & {"onnxruntime", "sklearn", "skl2onnx", "matplotlib", *spark}
