"""Inputs that are pipes, ids at the edges of BIGINT, and synthetic CSVs next to a used warehouse (issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import duckdb

from tests.conftest import REPO

HEADER = "CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)\n"
ROWS = "1,Male,19,15,39\n2,Female,21,15,81\n3,Female,20,16,6\n"


def _query(settings, sql):
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _env(settings) -> dict:
    return {
        **os.environ,
        "MALLSCORE_WAREHOUSE": str(settings.warehouse),
        "MALLSCORE_MODELS_DIR": str(settings.models_dir),
        "MALLSCORE_LOCK_TIMEOUT": "0.5",
        "PYTHONPATH": str(REPO),
    }


def test_standard_input_is_ingested_with_dash(cli, settings) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mallscore", "ingest", "-", "--json"],
        input=HEADER + ROWS,
        env=_env(settings),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert '"source": "csv:stdin"' in done.stdout and '"loaded": 3' in done.stdout
    assert _query(settings, "select count(*) from raw_customers") == [(3,)]
    assert not list(settings.warehouse.parent.glob(".ingest-spool-*"))  # the spool file is gone
    empty = subprocess.run(
        [sys.executable, "-m", "mallscore", "ingest", "-"],
        input="",
        env=_env(settings),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert empty.returncode == 65 and "stdin: the file is empty" in empty.stderr, empty.stderr


def test_a_pipe_is_read_before_the_lock_so_a_slow_writer_blocks_nobody(cli, settings, tmp_path) -> None:
    assert cli("features").returncode == 0  # the warehouse exists
    fifo = tmp_path / "day.csv"
    os.mkfifo(fifo)
    ingest = subprocess.Popen(
        [sys.executable, "-m", "mallscore", "ingest", str(fifo), "--json"],
        env=_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        time.sleep(1.0)  # the ingest process is up and waiting for the pipe's writer
        assert ingest.poll() is None
        other = cli("features")  # needs the write lock: it must not be held by the waiting ingest
        assert other.returncode == 0, other.stderr
        with open(fifo, "w") as writer:
            writer.write(HEADER + ROWS)
        out, err = ingest.communicate(timeout=120)
    finally:
        ingest.kill()
    assert ingest.returncode == 0, err
    assert '"source": "csv:day.csv"' in out and '"loaded": 3' in out


def test_any_bigint_is_a_customer_id_and_the_reason_names_the_real_problem(cli, settings, tmp_path) -> None:
    data = tmp_path / "ids.csv"
    data.write_text(
        HEADER
        + "-5,Male,30,50,40\n"
        + "9223372036854775807,Female,30,50,40\n"
        + "-9223372036854775808,Female,30,50,40\n"
        + "007,Male,30,50,40\n"
        + "9223372036854775808,Male,30,50,40\n"
        + "12x,Male,30,50,40\n"
    )
    done = cli("ingest", data, "--json")
    assert done.returncode == 0, done.stderr
    ids = {r[0] for r in _query(settings, "select customer_id from raw_customers")}
    assert ids == {-5, 9223372036854775807, -9223372036854775808, 7}
    reasons = dict(_query(settings, "select line_no, reason from rejected_rows order by line_no"))
    assert "out of range" in reasons[6] and "9223372036854775808" in reasons[6]
    assert reasons[7] == 'customer_id "12x" is not a whole number'


def test_synth_csv_never_reuses_an_id_of_the_configured_warehouse(cli, settings, tmp_path) -> None:
    real = tmp_path / "real.csv"
    real.write_text(HEADER + ROWS)
    assert cli("ingest", real).returncode == 0
    before = _query(settings, "select customer_id, age from raw_customers order by 1")
    fake = tmp_path / "synth.csv"
    assert cli("synth", "--rows", "20", "--csv", fake).returncode == 0
    assert cli("ingest", fake).returncode == 0
    after = _query(settings, "select customer_id, age from raw_customers where customer_id <= 3 order by 1")
    assert after == before  # the three real customers were not overwritten
    assert _query(settings, "select count(*), min(customer_id) from raw_customers where customer_id > 3") == [(20, 4)]
