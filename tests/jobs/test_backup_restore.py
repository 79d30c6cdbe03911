"""Backup and restore with integrity first: real warehouses, real damaged files, real processes killed and raced.

* a damaged warehouse is never backed up, and the previous backup stays byte-identical;
* a damaged backup is never restored, and the warehouse stays byte-identical;
* committed transactions that sit in a backup's WAL survive the restore;
* a scoring run that printed success is, afterwards, in the warehouse or in
  ``.before-restore``, however restore and score interleave;
* a killed backup or restore leaves nothing that the next run does not clean up.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from mallscore import atomic
from mallscore.backup import backup_warehouse, restore_warehouse, verify_file
from mallscore.settings import Settings
from tests.fault_support import start_cli
from tests.jobs.test_damaged_warehouse import flip_data_block, truncate
from tests.scoring_support import REPO, cli_env, seed_customers, write_model


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def keep_of(settings: Settings) -> Path:
    return settings.warehouse.with_name(settings.warehouse.name + ".before-restore")


def temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if ".tmp-" in p.name)


def succeeded_runs(path: Path) -> set[str]:
    if not path.exists():
        return set()
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {r[0] for r in con.execute("select run_id from scoring_runs where status = 'succeeded'").fetchall()}
    finally:
        con.close()


def cli(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mallscore", *args],
        env=cli_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> tuple[Settings, Path]:
    """A warehouse of 150,000 customers with a champion (scoring takes a moment), and a backup of it."""
    root = tmp_path_factory.mktemp("origin")
    settings = Settings(warehouse=root / "wh" / "w.duckdb", models_dir=root / "models", lock_timeout=60)
    seed_customers(settings, known=75_000, new=75_000)
    write_model(settings.models_dir, "v1", ranges={"age": (12.0, 120.0), "annual_income": (0.0, 10_000.0)})
    backup = root / "backup.duckdb"
    backup_warehouse(settings, backup)
    return settings, backup


@pytest.fixture
def site(origin, tmp_path) -> tuple[Settings, Path]:
    """A private copy of the origin warehouse and its backup."""
    settings, backup = origin
    mine = Settings(warehouse=tmp_path / "wh" / "w.duckdb", models_dir=settings.models_dir, lock_timeout=60)
    mine.warehouse.parent.mkdir()
    shutil.copy(settings.warehouse, mine.warehouse)
    shutil.copy(backup, tmp_path / "backup.duckdb")
    return mine, tmp_path / "backup.duckdb"


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_backup_of_a_damaged_warehouse_is_78_and_the_previous_backup_stays_byte_identical(site, damage):
    settings, backup = site
    before = digest(backup)
    (flip_data_block if damage == "flipped" else truncate)(settings.warehouse)
    out = cli(settings, "backup", str(backup))
    assert out.returncode == 78, out.stderr
    assert "is damaged" in out.stderr and len(out.stderr.splitlines()) == 1
    assert digest(backup) == before
    assert temporaries(backup.parent) == []


@pytest.mark.parametrize("damage", ["truncated", "flipped", "not_mallscore"])
def test_restore_of_a_damaged_backup_is_78_and_the_warehouse_stays_byte_identical(site, damage):
    settings, backup = site
    if damage == "not_mallscore":
        backup.unlink()
        con = duckdb.connect(str(backup))
        con.execute("create table t as select 1 as a")
        con.close()
    else:
        (flip_data_block if damage == "flipped" else truncate)(backup)
    before = digest(settings.warehouse)
    out = cli(settings, "restore", str(backup))
    assert out.returncode == 78, out.stderr
    assert "the warehouse was not changed" in out.stderr and len(out.stderr.splitlines()) == 1
    assert digest(settings.warehouse) == before
    assert not keep_of(settings).exists()
    assert temporaries(settings.warehouse.parent) == []


def test_restore_keeps_what_was_committed_in_the_backups_wal(site, tmp_path):
    settings, _ = site
    # a "backup" taken by copying a live warehouse and its WAL, with commits only in the WAL
    live = tmp_path / "live.duckdb"
    shutil.copy(settings.warehouse, live)
    code = (
        "import duckdb, os, shutil, sys; c = duckdb.connect(sys.argv[1]); c.execute('checkpoint'); "
        "c.execute('insert into raw_customers select customer_id + 10000000, gender, age, annual_income, "
        "spending_score, load_id, updated_at from raw_customers limit 7'); "
        "shutil.copy(sys.argv[1], sys.argv[2]); shutil.copy(sys.argv[1] + '.wal', sys.argv[2] + '.wal'); os._exit(0)"
    )
    copied = tmp_path / "copied.duckdb"
    subprocess.run([sys.executable, "-c", code, str(live), str(copied)], check=True)
    assert Path(str(copied) + ".wal").stat().st_size > 0
    out = cli(settings, "restore", str(copied))
    assert out.returncode == 0, out.stderr
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        extra = con.execute("select count(*) from raw_customers where customer_id > 10000000").fetchall()[0][0]
    finally:
        con.close()
    assert extra == 7
    assert not Path(str(settings.warehouse) + ".wal").exists()
    assert temporaries(settings.warehouse.parent) == []


def test_the_damaged_warehouse_procedure_move_aside_then_restore(site, tmp_path):
    """README: move the damaged file and its WAL aside, then restore into the empty place."""
    settings, backup = site
    truncate(settings.warehouse)
    assert cli(settings, "status").returncode == 78
    aside = tmp_path / "aside"
    aside.mkdir()
    shutil.move(settings.warehouse, aside / settings.warehouse.name)
    out = cli(settings, "restore", str(backup), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"] == sum(verify_file(backup).values())
    assert not keep_of(settings).exists()
    assert cli(settings, "status").returncode == 0
    assert temporaries(settings.warehouse.parent) == []


def test_restore_waits_for_a_reader_then_exits_75_naming_it_and_changes_nothing(site):
    settings, backup = site
    before = digest(settings.warehouse)
    reader = duckdb.connect(str(settings.warehouse), read_only=True)  # an analyst on the warehouse itself
    try:
        out = subprocess.run(
            [sys.executable, "-m", "mallscore", "restore", str(backup)],
            env=cli_env(settings, MALLSCORE_LOCK_TIMEOUT="0.5"),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        reader.close()
    assert out.returncode == 75, out.stderr
    assert f"(PID {os.getpid()})" in out.stderr
    assert digest(settings.warehouse) == before and not keep_of(settings).exists()


def _score(settings: Settings) -> subprocess.Popen:
    return start_cli(settings, "score", "--all", "--json", "--quiet")


def _printed_run(proc: subprocess.Popen) -> str | None:
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        return None
    return json.loads(out)["run_id"]


def test_a_score_started_while_restore_swaps_runs_after_it_on_the_restored_warehouse(site):
    """Restore holds the lock through the swap: the score waits, then scores the restored file."""
    settings, backup = site
    started: list[subprocess.Popen] = []

    def during_swap(_copy: Path) -> None:
        proc = _score(settings)
        started.append(proc)
        try:
            proc.wait(timeout=4)  # a score that is not held back would finish here, on the old file
        except subprocess.TimeoutExpired:
            pass

    restore_warehouse(settings, backup, before_swap=during_swap)
    run_id = _printed_run(started[0])
    assert run_id is not None, "the score run failed"
    assert run_id in succeeded_runs(settings.warehouse) | succeeded_runs(keep_of(settings))
    assert run_id in succeeded_runs(settings.warehouse)  # it ran after the swap, on the restored warehouse


@pytest.mark.parametrize("head_start", [0.0, 0.6])
def test_restore_racing_score_never_loses_a_run_that_printed_success(site, head_start):
    """Real processes started ``head_start`` seconds apart: whichever wins, a printed run survives."""
    settings, backup = site
    score = _score(settings)
    time.sleep(head_start)
    restore = start_cli(settings, "restore", str(backup))
    run_id = _printed_run(score)
    r_out, r_err = restore.communicate(timeout=120)
    assert restore.returncode == 0, r_err
    assert run_id is not None, "the score run failed"
    assert run_id in succeeded_runs(settings.warehouse) | succeeded_runs(keep_of(settings))
    assert temporaries(settings.warehouse.parent) == []


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 60) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; False when the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    return False


def test_a_killed_backup_leaves_the_previous_backup_and_the_next_backup_cleans_up(site):
    settings, backup = site
    before = digest(backup)
    proc = start_cli(settings, "backup", str(backup))
    assert _kill_when(proc, lambda: atomic.leftovers(backup)), "backup ended before it could be killed"
    assert digest(backup) == before  # the destination is only ever replaced whole
    assert atomic.leftovers(backup)  # the killed copy is still there...
    out = cli(settings, "backup", str(backup))
    assert out.returncode == 0, out.stderr
    assert temporaries(backup.parent) == []  # ...until the next backup removes it
    assert verify_file(backup)["raw_customers"] == 150_000


@pytest.mark.parametrize("moment", ["copying the backup", "keeping the current warehouse"])
def test_a_killed_restore_leaves_a_whole_warehouse_and_the_next_restore_cleans_up(site, moment):
    settings, backup = site
    old = digest(settings.warehouse)
    target = (
        settings.warehouse
        if moment == "copying the backup"
        else settings.warehouse.with_name(settings.warehouse.name + ".before-restore")
    )
    original = settings.warehouse.with_name("original.duckdb")
    shutil.copy2(settings.warehouse, original)
    for _attempt in range(10):  # the copy can be over in a few ms: a restore that was not caught is undone
        proc = start_cli(settings, "restore", str(backup))
        if _kill_when(proc, lambda: atomic.leftovers(target)):
            break
        keep_of(settings).unlink(missing_ok=True)
        shutil.copy2(original, settings.warehouse)
    else:
        pytest.fail("restore ended before it could be killed, 10 times")
    original.unlink()
    assert digest(settings.warehouse) == old  # nothing was swapped: the warehouse is whole and unchanged
    assert temporaries(settings.warehouse.parent)
    out = cli(settings, "restore", str(backup))
    assert out.returncode == 0, out.stderr
    assert temporaries(settings.warehouse.parent) == []
    assert verify_file(settings.warehouse) == verify_file(backup)
    assert digest(keep_of(settings)) == old
