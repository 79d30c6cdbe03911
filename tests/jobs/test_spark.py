"""Spark (local mode, one session for all tests): export-sql --dialect spark and the Spark scoring job.

The model SQL must match onnxruntime as on DuckDB and PostgreSQL, and the
Spark job must give the DuckDB job's segments and rejected customers on the
same input. The tests skip only outside CI when pyspark or Java is missing.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from mallscore.errors import BadInputError, ConfigError, InputMissingError
from mallscore.settings import Settings
from mallscore.spark_job import feature_view_statements, prepare_job, run_job, spark_view_sql
from mallscore.sqlexport import compile_model_sql
from tests.jobs.test_export_sql import (  # noqa: F401  (models and warehouse are fixtures)
    PARITY_ROWS,
    _compare,
    _expected,
    _features,
    _income_edges,
    models,
    warehouse,
)
from tests.scoring_support import query, seed_customers, write_model

# One JVM for the whole file: under `make test` (xdist --dist loadgroup) every test here runs on one worker.
pytestmark = pytest.mark.xdist_group("spark")
REPO = Path(__file__).resolve().parents[2]
RAW = "customer_id, gender, age, annual_income, spending_score"


def _feature_view(spark, warehouse_path: Path, tmp: Path) -> None:
    """The DuckDB warehouse's features_customer as a Parquet file, seen by Spark as features_customer."""
    parquet = tmp / "features.parquet"
    if not parquet.exists():
        con = duckdb.connect(str(warehouse_path), read_only=True)
        try:
            con.execute(
                "copy (select customer_id, age, annual_income, gender_female, spending_score from features_customer) "
                f"to '{parquet}' (format parquet)"
            )
        finally:
            con.close()
    spark.read.parquet(str(parquet)).createOrReplaceTempView("features_customer")


def _rows(spark, sql: str) -> list[tuple]:
    columns = ("customer_id", "p_high_spender", "predicted_high_spender", "segment")
    frame = spark.sql(sql)
    if not hasattr(frame, "toArrow"):  # Spark 3.5 (toArrow is new in 4.0)
        return [tuple(row[c] for c in columns) for row in frame.collect()]
    table = frame.toArrow()
    return list(zip(*(table.column(c).to_pylist() for c in columns)))


@pytest.fixture(scope="module")
def parity_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("spark_parity")


@pytest.mark.parametrize("name", ["scale", "bins", "mixed"])
def test_parity_with_onnxruntime_on_spark(spark, models, warehouse, parity_dir, name):  # noqa: F811
    card, data = models[name]
    _feature_view(spark, warehouse, parity_dir)
    sql = compile_model_sql(card, data, "spark")
    code = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    assert '"' not in code and "double precision" not in code  # Spark reads "x" as a string, not a column
    expected = _expected(card, data, _features(warehouse))
    rows = _rows(spark, sql)
    assert len(rows) >= PARITY_ROWS - 52
    assert 0 < _compare(rows, expected) < 1e-6
    assert len(set(expected["segment"])) == 4 and expected["label"].any() and not expected["label"].all()


@pytest.mark.parametrize("name", ["bins", "mixed"])
def test_top_reason_is_the_same_on_spark_as_on_duckdb(spark, models, warehouse, parity_dir, name):  # noqa: F811
    from tests.jobs.test_export_sql import reference_card, top_reasons

    card, data = reference_card(models, name)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        expected = top_reasons(con, compile_model_sql(card, data, "duckdb"))
    finally:
        con.close()
    _feature_view(spark, warehouse, parity_dir)
    rows = spark.sql(compile_model_sql(card, data, "spark")).select("customer_id", "top_reason").collect()
    assert {r["customer_id"]: r["top_reason"] for r in rows} == expected
    assert len(set(expected.values()) - {None}) >= 3


def test_parity_without_ansi_mode_as_spark_3_5_runs_by_default(spark, models, warehouse, parity_dir):  # noqa: F811
    card, data = models["mixed"]
    _feature_view(spark, warehouse, parity_dir)
    before = spark.conf.get("spark.sql.ansi.enabled")
    spark.conf.set("spark.sql.ansi.enabled", "false")
    try:
        rows = _rows(spark, compile_model_sql(card, data, "spark"))
    finally:
        spark.conf.set("spark.sql.ansi.enabled", before)
    _compare(rows, _expected(card, data, _features(warehouse)))


def test_tier_names_with_quotes_and_backslashes_come_back_unchanged(spark, models, warehouse, parity_dir):  # noqa: F811
    card, data = models["scale"]
    odd = copy.deepcopy(card)
    odd["tiers"][0]["name"] = "it's \\gold\\ ''"
    _feature_view(spark, warehouse, parity_dir)
    segments = {
        r[0] for r in spark.sql(f"select distinct segment from ({compile_model_sql(odd, data, 'spark')})").collect()
    }
    assert segments == {"it's \\gold\\ ''", "silver", "bronze", "rest"}


@pytest.fixture(scope="module")
def typed_parquet(models, tmp_path_factory):  # noqa: F811
    """A lake's own feature table: integer age and gender, double income, incomes next to float32 bin edges.

    Some incomes sit one double step either side of a bin edge rounded to float32: the graph sees the
    edge itself there, so SQL that skips the float32 rounding puts them in another bin. One NaN income,
    one infinite and some values outside the card are quarantined.
    """
    import pyarrow as pa

    rows = 3_000
    rng = np.random.default_rng(31)
    age = rng.integers(12, 121, rows).astype(float)
    income = rng.uniform(0.0, 130.0, rows)
    gender = rng.integers(0, 2, rows).astype(float)
    edges = _income_edges(models["_pipes"]).astype(np.float32).astype(float)
    edges = edges[(edges > 0) & (edges < 130)]
    near = np.concatenate([np.nextafter(edges, -np.inf), edges, np.nextafter(edges, np.inf)])
    income[10 : 10 + near.size] = near
    age[:3], income[3:7], gender[7:9] = [11.0, 121.0, np.nan], [130.5, -1.0, np.nan, np.inf], [2.0, np.nan]
    feats = {
        "customer_id": np.arange(1, rows + 1),
        "age": age,
        "annual_income": income,
        "gender_female": gender,
        "spending_score": np.full(rows, np.nan),
    }
    path = tmp_path_factory.mktemp("spark_typed") / "features.parquet"
    pq.write_table(
        pa.table(
            {
                "customer_id": pa.array(feats["customer_id"], pa.int64()),
                "age": pa.array([None if np.isnan(a) else int(a) for a in age], pa.int32()),
                "annual_income": pa.array(income, pa.float64()),  # NaN and inf stay as they are
                "gender_female": pa.array([None if np.isnan(g) else int(g) for g in gender], pa.int32()),
                "spending_score": pa.array([None] * rows, pa.int32()),
            }
        ),
        path,
    )
    return path, feats


@pytest.mark.parametrize("name", ["bins", "mixed"])
def test_export_sql_cli_output_runs_on_spark_over_integer_columns_and_bin_edges(spark, models, typed_parquet, name):  # noqa: F811
    from typer.testing import CliRunner

    import mallscore.cli  # noqa: F401  (registers commands)
    from mallscore.cli.app import app

    card, data = models[name]
    printed = CliRunner().invoke(
        app, ["--models-dir", str(models["_dir"]), "export-sql", "--dialect", "spark", "--model", f"v-{name}"]
    )
    assert printed.exit_code == 0, printed.output
    path, feats = typed_parquet
    spark.read.parquet(str(path)).createOrReplaceTempView("features_customer")
    expected = _expected(card, data, feats)
    assert len(expected["customer_id"]) == 3_000 - 9  # the rows outside the card drop out
    _compare(_rows(spark, printed.stdout), expected)


# --- the feature views -------------------------------------------------------------------


def test_feature_views_are_the_warehouse_files_as_temporary_views():
    stg, features = feature_view_statements()
    assert stg.startswith("create or replace temporary view stg_customers as")
    assert features.startswith("create or replace temporary view features_customer as")
    assert ";" not in stg + features and "case when gender = 'Female' then 1.0 else 0.0 end" in features


def test_view_translation_refuses_anything_but_one_view_of_the_expected_name():
    assert spark_view_sql("-- a; comment\ncreate or replace view v as select 1;\n", "v") == (
        "create or replace temporary view v as select 1"
    )
    for text, name in [
        ("create or replace view v as select 1; drop table t;", "v"),
        ("create or replace view w as select 1;", "v"),
        ("create table v as select 1;", "v"),
    ]:
        with pytest.raises(ConfigError):
            spark_view_sql(text, name)


# --- the job -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def duckdb_run(tmp_path_factory):
    """The nightly DuckDB job over 5,000 customers (some outside the card), and the same raw rows as Parquet."""
    from mallscore.scoring import score_customers

    tmp = tmp_path_factory.mktemp("spark_job")
    settings = Settings(warehouse=tmp / "wh.duckdb", models_dir=tmp / "models", lock_timeout=5)
    write_model(settings.models_dir, "v1", threshold=0.45, reference=True)
    seed_customers(settings, known=3000, new=2000)
    con = duckdb.connect(str(settings.warehouse))
    try:
        con.execute("update raw_customers set annual_income = 'nan'::double where customer_id in (3, 3003)")
        con.execute("update raw_customers set annual_income = 'inf'::double where customer_id = 7")
        con.execute("update raw_customers set annual_income = -5 where customer_id = 11")
        con.execute("update raw_customers set age = 300 where customer_id in (4, 4004)")
        con.execute("update raw_customers set gender = 'X' where customer_id = 12")  # not Female: scored as 0.0
        parquet = tmp / "customers.parquet"
        con.execute(f"copy (select {RAW} from raw_customers) to '{parquet}' (format parquet)")
    finally:
        con.close()
    run = score_customers(settings, "all", publish=False)
    segments = query(
        settings, "select customer_id, segment, p_high_spender, predicted_high_spender, basis, top_reason from segments"
    )
    rejected = query(settings, "select customer_id from rejected_rows where run_id = ?", [run["run_id"]])
    return {
        "settings": settings,
        "model_dir": settings.models_dir / "default" / "v1",
        "parquet": parquet,
        "run": run,
        "segments": {r[0]: r[1:] for r in segments},
        "rejected": sorted(int(r[0]) for r in rejected),
        "tmp": tmp,
    }


def test_the_spark_job_equals_the_duckdb_job(spark, duckdb_run, tmp_path):
    out = tmp_path / "run1"
    result = run_job(spark, prepare_job(duckdb_run["model_dir"], str(out), str(duckdb_run["parquet"])))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["run1"]  # the temporary folder was renamed into place
    segments = pq.read_table(out / "segments").to_pylist()
    assert [c for c in segments[0]] == [
        "customer_id",
        "segment",
        "p_high_spender",
        "predicted_high_spender",
        "basis",
        "model_version",
        "run_id",
        "scored_at",
        "top_reason",
    ]
    job = duckdb_run["segments"]
    ours = {r["customer_id"]: r for r in segments}
    assert ours.keys() == job.keys()
    assert all(ours[k]["segment"] == job[k][0] for k in job)
    assert all(ours[k]["predicted_high_spender"] == job[k][2] and ours[k]["basis"] == job[k][3] for k in job)
    assert max(abs(ours[k]["p_high_spender"] - job[k][1]) for k in job) <= 1e-6
    assert all(ours[k]["top_reason"] == job[k][4] for k in job) and len({job[k][4] for k in job}) >= 3
    assert {(r["model_version"], r["run_id"]) for r in segments} == {("v1", result["run_id"])}
    assert {r["basis"] for r in segments} == {"observed", "predicted"}

    rejected = pq.read_table(out / "rejected").to_pylist()
    assert sorted(r["customer_id"] for r in rejected) == duckdb_run["rejected"] == [3, 4, 7, 11, 3003, 4004]
    assert all(r["reason"] for r in rejected)
    run = json.loads((out / "run.json").read_text())
    assert run == result
    assert (run["rows_read"], run["rows_scored"], run["rows_rejected"]) == (5000, 4994, 6)
    assert (run["rows_scored"], run["rows_rejected"]) == (
        duckdb_run["run"]["rows_scored"],
        duckdb_run["run"]["rows_rejected"],
    )


def test_the_job_reads_a_catalog_table_as_well(spark, duckdb_run, tmp_path):
    spark.read.parquet(str(duckdb_run["parquet"])).createOrReplaceTempView("lake_customers")
    result = run_job(spark, prepare_job(duckdb_run["model_dir"], str(tmp_path / "out"), table="lake_customers"))
    assert (result["input"], result["rows_scored"], result["rows_rejected"]) == ("lake_customers", 4994, 6)
    with pytest.raises(InputMissingError, match="no_such_table"):
        run_job(spark, prepare_job(duckdb_run["model_dir"], str(tmp_path / "out2"), table="no_such_table"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _job(*args: str, java: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLSCORE_", "PYSPARK_", "SPARK_"))}
    if not java:  # no Java at all: the job can only pass if it never starts Spark
        env.update(JAVA_HOME="/nonexistent", PATH=str(Path(sys.executable).parent) + ":/usr/bin/nonexistent")
    return subprocess.run(
        [sys.executable, str(REPO / "jobs" / "spark_score.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_a_tampered_model_is_refused_before_spark_starts(duckdb_run, tmp_path):
    copied = tmp_path / "models"
    shutil.copytree(duckdb_run["settings"].models_dir, copied)
    onnx_file = copied / "default" / "v1" / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")
    args = ["--input", str(duckdb_run["parquet"]), "--output", str(tmp_path / "out")]

    tampered = _job("--model", str(copied / "default" / "v1"), *args, java=False)
    assert tampered.returncode == 78, tampered.stderr
    assert len(tampered.stderr.strip().splitlines()) == 1 and "sha256" in tampered.stderr
    assert not (tmp_path / "out").exists()
    # the same command with the intact model does need Spark (so the check above really ran first)
    intact = _job("--model", str(duckdb_run["model_dir"]), *args, java=False)
    assert intact.returncode == 1 and "Spark" in intact.stderr
    assert not (tmp_path / "out").exists()


def test_usage_and_missing_input_exit_codes(duckdb_run, tmp_path):
    model = str(duckdb_run["model_dir"])
    missing = _job("--model", model, "--input", str(tmp_path / "none.parquet"), "--output", str(tmp_path / "o"))
    assert missing.returncode == 66 and len(missing.stderr.strip().splitlines()) == 1
    (tmp_path / "taken").mkdir()
    taken = _job("--model", model, "--input", str(duckdb_run["parquet"]), "--output", str(tmp_path / "taken"))
    assert taken.returncode == 2 and "already exists" in taken.stderr
    usage = _job("--input", str(duckdb_run["parquet"]), "--output", str(tmp_path / "o"))
    assert usage.returncode == 2 and "--model" in usage.stderr
    assert "Traceback" not in missing.stderr + taken.stderr + usage.stderr


def test_a_failed_run_leaves_no_output_folder(spark, duckdb_run, tmp_path):
    con = duckdb.connect()
    try:
        no_income = tmp_path / "no_income.parquet"
        con.execute(
            f"copy (select customer_id, gender, age, spending_score from '{duckdb_run['parquet']}') to '{no_income}'"
        )
        text_age = tmp_path / "text_age.parquet"
        con.execute(
            f"copy (select customer_id, gender, case when customer_id = 4321 then 'old' else cast(age as varchar) end "
            f"as age, annual_income, spending_score from '{duckdb_run['parquet']}') to '{text_age}'"
        )
    finally:
        con.close()
    model = duckdb_run["model_dir"]
    with pytest.raises(BadInputError, match="annual_income"):
        run_job(spark, prepare_job(model, str(tmp_path / "out1"), str(no_income)))
    with pytest.raises(BadInputError, match="column age is string, not a number"):
        run_job(spark, prepare_job(model, str(tmp_path / "out2"), str(text_age)))
    # a failure inside Spark after segments/ was written: rejected/ cannot be created (a file holds its name)
    blocked = tmp_path / "out3.tmp-S1"
    blocked.mkdir()
    (blocked / "rejected").write_text("in the way")
    with pytest.raises(Exception, match="rejected"):
        run_job(spark, prepare_job(model, str(tmp_path / "out3"), str(duckdb_run["parquet"])), run_id="S1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no_income.parquet", "text_age.parquet"]
