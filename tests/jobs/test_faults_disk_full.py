"""A full disk is a clean failure: exit 74, one line naming the path, nothing partial; freeing space heals.

The warehouse lives on a real tmpfs mounted for the test (40 MiB), filled with a
file (``posix_fallocate``) until only a little space is left; the real CLI then
runs in a subprocess. Afterwards the warehouse must open and hold exactly what it
held before (the load or the run is all or nothing), the analyst snapshot must be
the previous one, and the same command must succeed once the filler is removed.

Mounting needs root (CI runs as root). Elsewhere these tests skip, saying so,
unless MALLSCORE_REQUIRE_ROOT_TESTS=1 makes that a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import duckdb
import pytest

from mallscore.settings import Settings
from mallscore.synth import generate, write_csv
from tests.fault_support import assert_all_or_nothing, assert_one_segment_per_customer, read_state
from tests.scoring_support import REPO, cli_env, seed_customers, write_model

DISK_SIZE = "40m"


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 40 MiB tmpfs mounted at tmp_path/disk, unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    why = None
    if os.geteuid() != 0:
        why = "needs root to mount a tmpfs"
    else:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            why = f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})"
    if why:
        if os.environ.get("MALLSCORE_REQUIRE_ROOT_TESTS"):
            pytest.fail(f"full-disk tests: {why}, and MALLSCORE_REQUIRE_ROOT_TESTS is set")
        pytest.skip(f"full-disk tests: {why} (set MALLSCORE_REQUIRE_ROOT_TESTS=1 to make this a failure)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def fill(disk: Path, leave: int) -> Path:
    """Allocate a filler file so that about ``leave`` bytes stay free on ``disk``."""
    filler = disk / "filler"
    size = max(free_bytes(disk) - leave, 0)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if size:
            os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)
    return filler


def run(settings: Settings, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [os.sys.executable, "-m", "mallscore", *map(str, args)],
        env=cli_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_clean_failure(out: subprocess.CompletedProcess, path: Path) -> None:
    assert out.returncode == 74, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mallscore: "), out.stderr
    assert str(path) in lines[0] and "free space" in lines[0], lines[0]


def counts(path: Path) -> tuple:
    con = duckdb.connect(str(path), read_only=True, config={"enable_external_access": "false"})
    try:
        customers = con.execute("select count(*), coalesce(sum(customer_id), 0) from raw_customers").fetchone()
        loads = con.execute("select load_id, rows_in_file, loaded from ingest_loads order by load_id").fetchall()
        rejected = con.execute("select count(*) from rejected_rows").fetchone()[0]
        tables = {r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()}
    finally:
        con.close()
    return customers, loads, rejected, tables


@pytest.mark.slow
@pytest.mark.parametrize(
    "big_first_id, route",
    # the big file updates the first load's customers (upserted), or holds only new ones (written once)
    [(1, "upsert"), (10_001, "direct")],
)
def test_ingest_on_a_full_disk_fails_cleanly_and_succeeds_after_space_is_freed(
    small_disk, tmp_path, big_first_id, route
):
    settings = Settings(warehouse=small_disk / "wh" / "mallscore.duckdb", models_dir=tmp_path / "models")
    first, big = tmp_path / "first.csv", tmp_path / "big.csv"
    write_csv(generate(5_000, seed=1), first)
    write_csv(generate(300_000, seed=2, first_id=big_first_id), big)
    assert run(settings, "ingest", first).returncode == 0
    before = counts(settings.warehouse)
    filler = fill(small_disk, leave=512 << 10)
    out = run(settings, "ingest", big, "--json")
    assert_clean_failure(out, settings.warehouse.parent)
    after = counts(settings.warehouse)
    assert after == before  # nothing of the failed load, the first load whole
    assert not {"mallscore_ingest_stage", "mallscore_ingest_plain"} & after[3]
    filler.unlink()
    again = run(settings, "ingest", big, "--json")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    new = 300_000 if route == "direct" else 295_000
    assert (result["rows_in_file"], result["loaded"], result["inserted"], result["route"]) == (
        300_000,
        300_000,
        new,
        route,
    )
    (rows, _), loads, _, _ = counts(settings.warehouse)
    assert rows == 5_000 + new and len(loads) == 2 and loads[-1][1:] == (300_000, 300_000)


@pytest.mark.slow
def test_score_on_a_full_disk_rolls_back_and_a_later_run_heals(small_disk, tmp_path):
    settings = Settings(warehouse=small_disk / "wh" / "mallscore.duckdb", models_dir=tmp_path / "models")
    seed_customers(settings, known=20_000, new=20_000)
    write_model(settings.models_dir, "v1", ranges={"age": (12.0, 120.0), "annual_income": (0.0, 10_000.0)})
    assert run(settings, "score").returncode == 0
    snapshot_before = settings.snapshot.read_bytes()
    assert run(settings, "synth", "--rows", "600000", "--new").returncode == 0
    state_before = read_state(settings.warehouse)
    filler = fill(small_disk, leave=8 << 10)  # room for the run's 'running' row, not for its segments
    out = run(settings, "score")
    assert_clean_failure(out, settings.warehouse.parent)
    state = read_state(settings.warehouse)
    assert_all_or_nothing(state, "after the full disk")
    assert state.segments == state_before.segments and state.history == state_before.history
    assert sorted(s for s, _, _ in state.runs.values()) == ["failed", "succeeded"]  # marked failed, rolled back
    assert settings.snapshot.read_bytes() == snapshot_before  # analysts still see the previous night
    filler.unlink()
    healed = run(settings, "score")
    assert healed.returncode == 0, healed.stderr
    state = read_state(settings.warehouse)
    assert_all_or_nothing(state, "after freeing space")
    assert_one_segment_per_customer(state, "after freeing space")
    assert state.customers == 640_000
    assert read_state(settings.snapshot).segments == (640_000, 640_000)


@pytest.mark.slow
def test_score_all_on_a_full_disk_keeps_every_segment_and_a_later_run_heals(small_disk, tmp_path):
    """`score --all` archives every segment before it writes the new ones: the disk fills inside that copy."""
    settings = Settings(warehouse=small_disk / "wh" / "mallscore.duckdb", models_dir=tmp_path / "models")
    seed_customers(settings, known=150_000, new=0)
    write_model(settings.models_dir, "v1", ranges={"age": (12.0, 120.0), "annual_income": (0.0, 10_000.0)})
    unscored = settings.warehouse.stat().st_size
    assert run(settings, "score").returncode == 0
    segments_bytes = settings.warehouse.stat().st_size - unscored
    snapshot_before = settings.snapshot.read_bytes()
    state_before = read_state(settings.warehouse)
    assert state_before.segments == (150_000, 150_000)
    # room for the 'running' row and part of the archive's copy of segments: the disk fills inside the run
    filler = fill(small_disk, leave=segments_bytes // 2)
    out = run(settings, "score", "--all")
    assert_clean_failure(out, settings.warehouse.parent)
    assert "analyst snapshot" not in out.stderr  # the run failed, not the publish after it
    state = read_state(settings.warehouse)
    assert_all_or_nothing(state, "after the full disk")
    assert state.segments == state_before.segments and state.segment_runs == state_before.segment_runs
    assert state.history == state_before.history  # nothing archived
    assert sorted(s for s, _, _ in state.runs.values()) == ["failed", "succeeded"]
    assert settings.snapshot.read_bytes() == snapshot_before
    filler.unlink()
    healed = run(settings, "score", "--all", "--json")
    assert healed.returncode == 0, healed.stderr
    state = read_state(settings.warehouse)
    assert_all_or_nothing(state, "after freeing space")
    assert_one_segment_per_customer(state, "after freeing space")
    assert sorted(state.history.values()) == [150_000, 150_000]  # the first run archived, the rebuild current
    assert state.segment_runs == {json.loads(healed.stdout)["run_id"]: 150_000}


@pytest.mark.slow
def test_snapshot_publish_on_a_full_disk_keeps_the_previous_snapshot(small_disk, tmp_path):
    settings = Settings(warehouse=small_disk / "wh" / "mallscore.duckdb", models_dir=tmp_path / "models")
    seed_customers(settings, known=60_000, new=60_000)
    write_model(settings.models_dir, "v1", ranges={"age": (12.0, 120.0), "annual_income": (0.0, 10_000.0)})
    assert run(settings, "score").returncode == 0
    snapshot_before = settings.snapshot.read_bytes()
    runs_before = read_state(settings.snapshot).runs
    # room for a run with nothing to score (a few KiB), not for a second copy of the warehouse
    filler = fill(small_disk, leave=settings.warehouse.stat().st_size // 2)
    out = run(settings, "score")
    assert_clean_failure(out, settings.snapshot.parent)
    assert "analyst snapshot" in out.stderr and "previous snapshot was kept" in out.stderr
    assert settings.snapshot.read_bytes() == snapshot_before
    assert read_state(settings.snapshot).runs == runs_before
    assert not [p for p in settings.snapshot.parent.iterdir() if ".tmp-" in p.name]
    committed = read_state(settings.warehouse)
    assert [s for s, _, _ in committed.runs.values()].count("succeeded") == 2  # the run itself committed
    filler.unlink()
    assert run(settings, "score").returncode == 0
    assert len(read_state(settings.snapshot).runs) == 3
