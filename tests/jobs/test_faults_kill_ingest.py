"""SIGKILL at random points of a real million-row `mallscore ingest`: the load is all or nothing.

Each trial copies a warehouse that already holds one small load, starts the real
CLI on a 1,000,000-row CSV and kills it with SIGKILL at a random moment: a
uniform time over a measured run (reading, validating, writing, committing), or
once the warehouse file or its WAL has grown (the load's own writes or its
commit). Afterwards the warehouse must open and hold either the whole load (its
``ingest_loads`` row and every row of the file) or nothing of it (the first load
exactly as it was), never the load's stage table; and the same ingest run again
must succeed (checked once after each kind of outcome: it takes a whole ingest).
The trials are seeded, so a failure can be replayed.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import time
from pathlib import Path

import duckdb
import pytest

from mallscore.settings import Settings
from mallscore.synth import generate, write_csv
from tests.fault_support import size, start_cli, wal_of

ROWS = 1_000_000
FIRST = 10_000
SEED = 20261130
KINDS = ["time", "time", "time", "time", "write", "commit"]


def _state(path: Path) -> tuple:
    con = duckdb.connect(str(path), read_only=True, config={"enable_external_access": "false"})
    try:
        loads = con.execute(
            "select rows_in_file, loaded, rejected, inserted from ingest_loads order by started_at, load_id"
        ).fetchall()
        customers = con.execute(
            "select count(*), count(distinct customer_id), count(distinct load_id) from raw_customers"
        ).fetchone()
        tables = {r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()}
    finally:
        con.close()
    return loads, customers, tables


def _kill(proc, kind: str, draw: float, warehouse: Path, wall: float) -> bool:
    wal, base = wal_of(warehouse), size(warehouse)
    started = time.monotonic()
    fire_at = started + draw * wall if kind == "time" else None
    while proc.poll() is None:
        now = time.monotonic()
        if fire_at is None:
            if kind == "write" and size(warehouse) > base + (1 << 20):
                fire_at = now + draw * 0.2
            elif kind == "commit" and size(wal) > 64 << 10:
                fire_at = now
        if fire_at is not None and now >= fire_at:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            return proc.returncode == -signal.SIGKILL
        time.sleep(0.001)
    proc.communicate(timeout=30)
    return False


@pytest.mark.slow
@pytest.mark.parametrize(
    "big_first_id, repeat, route",
    # the big file updates the first load's customers (upserted), holds only new ones (written once), or
    # gives its last id twice, far apart (the upsert route finds it at the end and the stage loads the file)
    [(1, False, "upsert"), (FIRST + 1, False, "direct"), (1, True, "stage")],
)
def test_a_killed_ingest_is_all_or_nothing_and_the_next_one_succeeds(tmp_path, big_first_id, repeat, route):
    big, first = tmp_path / "big.csv", tmp_path / "first.csv"
    write_csv(generate(ROWS, seed=5, first_id=big_first_id), big)
    if repeat:
        with big.open("r+") as handle:
            handle.readline()  # the header
            second = handle.readline()
            handle.seek(0, 2)
            last_id = big_first_id + ROWS - 1
            handle.write(f"{last_id},{second.split(',', 1)[1]}")
    write_csv(generate(FIRST, seed=6), first)
    base = Settings(warehouse=tmp_path / "base" / "mallscore.duckdb", models_dir=tmp_path / "models", lock_timeout=5)
    proc = start_cli(base, "ingest", str(first))
    assert proc.wait(timeout=120) == 0, proc.communicate()
    before = _state(base.warehouse)
    assert before[0] == [(FIRST, FIRST, 0, FIRST)]

    def fresh(name: str) -> Settings:
        settings = Settings(warehouse=tmp_path / name / "mallscore.duckdb", models_dir=base.models_dir, lock_timeout=5)
        settings.warehouse.parent.mkdir()
        shutil.copy(base.warehouse, settings.warehouse)
        return settings

    measured = fresh("measured")
    started = time.monotonic()
    proc = start_cli(measured, "ingest", str(big), "--json")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    wall = time.monotonic() - started
    assert json.loads(out)["route"] == route
    whole = _state(measured.warehouse)
    rows = ROWS + (FIRST if route == "direct" else 0) - (1 if repeat else 0)
    lines, bad = ROWS + (1 if repeat else 0), (2 if repeat else 0)
    assert whole[0][-1][:3] == (lines, lines - bad, bad) and whole[1][:2] == (rows, rows)

    rng = random.Random(SEED)
    outcomes = []
    for trial, kind in enumerate(KINDS):
        settings = fresh(f"trial{trial}")
        proc = start_cli(settings, "ingest", str(big))
        killed = _kill(proc, kind, rng.uniform(0.05, 1.0), settings.warehouse, wall)
        where = f"trial {trial} ({kind}, killed={killed})"
        state = _state(settings.warehouse)  # it must open
        assert not {"mallscore_ingest_stage", "mallscore_ingest_plain"} & state[2], where
        if state[0] == before[0]:
            assert state[1] == before[1], f"{where}: no load row, yet the customers changed: {state[1]}"
            outcomes.append("nothing")
        else:
            assert state == whole, f"{where}: a partial load is visible: {state[:2]}"
            outcomes.append("whole")
        if outcomes.count(outcomes[-1]) > 1:
            continue  # the next ingest is checked once after each outcome (it takes a whole ingest)
        again = start_cli(settings, "ingest", str(big), "--json")
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0, f"{where}: the next ingest failed: {err}"
        result = json.loads(out)
        assert (result["rows_in_file"], result["loaded"]) == (lines, lines - bad), where
        again_route = route if outcomes[-1] == "nothing" or repeat else "upsert"  # over a whole load: upsert
        assert result["route"] == again_route, where
        assert _state(settings.warehouse)[1] == whole[1], where
    assert "nothing" in outcomes, outcomes  # at least one kill landed inside the load (the write trigger does)
