"""SIGKILL at random points of real `mallscore score --all` runs: nothing partial is ever visible, the next run heals.

One warehouse of 600,000 synthetic customers takes every trial in sequence
(the night after a crash is the realistic case: stale ``running`` rows pile up,
the archive grows). Each trial starts the real CLI and sends SIGKILL when its
trigger fires. Triggers are drawn from a seeded generator so a failure can be
replayed:

* ``time``: a uniform delay over the whole measured run (startup, model load,
  reading, scoring, writing, commit, publishing);
* ``start``: a uniform delay over the first 15% of it (interpreter start, model
  check, the lock, the schema), so kills before the run starts are not left to
  chance;
* ``write``: once the warehouse file has grown by 1 MiB (the run's transaction
  is writing its blocks), then a random extra delay;
* ``commit``: as soon as the WAL holds more than 256 KiB (the commit or the
  checkpoint is being written);
* ``publish``: as soon as this run's temporary snapshot copy exists (mid-copy
  or during its open check), then up to 20 ms.

Which phase a kill actually hit is *observed* afterwards, not assumed: no new
run row (before the run started), a ``running`` row (inside the transaction;
"mid-write" when the files had grown at the moment of the kill), a
``succeeded`` row whose snapshot was not yet replaced (publishing), or the new
snapshot in place (after publishing).
"""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import duckdb
import pytest

from tests.fault_support import (
    assert_all_or_nothing,
    assert_one_segment_per_customer,
    big_warehouse,
    mode,
    read_state,
    size,
    start_cli,
    wal_of,
)

CUSTOMERS = 600_000
TRIALS = 24  # at least this many trials; more (up to MAX_TRIALS) until MIN_KILLS kills and every REQUIRED phase
MAX_TRIALS = 40
MIN_KILLS = 20
SEED = 20261127
KINDS = ["time"] * 10 + ["start"] * 2 + ["write"] * 5 + ["commit"] * 3 + ["publish"] * 4
EXTRA_KINDS = ["start", "write", "publish", "time", "commit"]  # cycled for trials past TRIALS
START_SHARE = 0.15  # a `start` kill fires within this share of the measured run
REQUIRED = ("killed mid-write", "killed after the commit", "killed before the run")  # phases every test must see


def _kill_when_triggered(proc, kind: str, draw: float, settings, wall: float) -> dict:
    """Poll the process and its files; SIGKILL when the trial's trigger fires. Returns what was seen at the kill."""
    warehouse, wal = settings.warehouse, wal_of(settings.warehouse)
    tmp_copy = settings.snapshot.with_name(f".{settings.snapshot.name}.tmp-{proc.pid}")  # this run's copy only
    base = size(warehouse)
    started = time.monotonic()
    fire_at = {"time": started + draw * wall, "start": started + draw * START_SHARE * wall}.get(kind)
    while proc.poll() is None:
        now = time.monotonic()
        if fire_at is None:
            if kind == "write" and size(warehouse) > base + (1 << 20):
                fire_at = now + draw * 0.25
            elif kind == "commit" and (size(wal) > 256 << 10 or size(warehouse) > base + (8 << 20)):
                fire_at = now  # the commit goes to the WAL, or (large commits) straight into the file
            elif kind == "publish" and tmp_copy.exists():
                fire_at = now + draw * 0.02
        if fire_at is not None and now >= fire_at:
            seen = {"grown": size(warehouse) - base, "wal": size(wal), "at": round(now - started, 3)}
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            seen["killed"] = proc.returncode == -signal.SIGKILL
            return seen
        time.sleep(0.001)
    proc.communicate(timeout=30)
    return {"killed": False, "at": round(time.monotonic() - started, 3), "grown": 0, "wal": size(wal)}


def _report(log: list) -> str:
    """The trials so far, one line each (trial, trigger, time of the kill, phase observed)."""
    return "\n".join(f"  {t:2d} {k:<7} at {a:5.2f}s  {p}" for t, k, a, p in log)


@pytest.mark.slow
def test_sigkill_at_random_points_never_leaves_a_partial_run_and_the_next_run_heals(tmp_path: Path) -> None:
    settings = big_warehouse(tmp_path, CUSTOMERS)
    # two complete runs: the first writes segments and a snapshot, the second is the timing baseline
    for _ in range(2):
        t0 = time.monotonic()
        proc = start_cli(settings, "score", "--all", "--json")
        out, err = proc.communicate(timeout=120)
        wall = time.monotonic() - t0
        assert proc.returncode == 0, err
    published = json.loads(out)["run_id"]
    rng = random.Random(SEED)
    kinds = KINDS[:]
    rng.shuffle(kinds)
    kinds += [EXTRA_KINDS[i % len(EXTRA_KINDS)] for i in range(MAX_TRIALS - len(kinds))]
    draws = [rng.random() for _ in kinds]

    stale: set[str] = set()  # runs a kill left `running`: the next run to start must mark them abandoned
    phases: dict[str, int] = {}
    log = []
    for trial, (kind, draw) in enumerate(zip(kinds, draws)):
        landed = sum(n for p, n in phases.items() if p.startswith("killed"))
        if trial >= TRIALS and landed >= MIN_KILLS and all(any(p.startswith(r) for p in phases) for r in REQUIRED):
            break
        before = read_state(settings.warehouse).runs
        proc = start_cli(settings, "score", "--all", "--quiet")
        seen = _kill_when_triggered(proc, kind, draw, settings, wall)
        where = f"trial {trial} ({kind}, seed {SEED}, {seen})"

        try:
            state = read_state(settings.warehouse)  # the warehouse opens
        except duckdb.Error as exc:
            raise AssertionError(f"{where}: the warehouse does not open: {exc}\n{_report(log)}") from exc
        assert_all_or_nothing(state, where)
        assert_one_segment_per_customer(state, where)
        new = sorted(set(state.runs) - set(before))
        assert len(new) <= 1, where
        run = new[0] if new else None
        status = state.runs[run][0] if run else None
        if run is not None:  # this run started, so it marked every stale row abandoned
            for old in stale:
                assert state.runs[old][0] == "abandoned", f"{where}: {old} is {state.runs[old][0]}"
                assert "killed" in state.error[old]
            stale.clear()
        else:
            assert all(state.runs[old][0] == "running" for old in stale), where

        snap = read_state(settings.snapshot)  # the analyst snapshot opens...
        assert_all_or_nothing(snap, f"{where} (snapshot)")
        assert_one_segment_per_customer(snap, f"{where} (snapshot)")
        latest = snap.latest_succeeded()
        assert latest in (published, run), f"{where}: snapshot shows {latest}, expected {published} or {run}"
        assert snap.segment_runs == {latest: snap.customers}, where  # ...and is wholly one night, never a mix

        if not seen["killed"]:
            assert proc.returncode == 0 and status == "succeeded" and latest == run, where
            phase = "completed before the kill"
        elif run is None:
            phase = "killed before the run started (startup, model check, lock, schema)"
        elif status == "running":
            stale.add(run)
            if seen["wal"] > (256 << 10):
                phase = "killed mid-write: while its commit was going to the WAL (not committed)"
            elif seen["grown"] > (1 << 20):
                phase = "killed mid-write: inside the transaction, its blocks going to the file"
            else:
                phase = (
                    "killed inside the transaction before its first MiB reached the file (reading, scoring, archiving)"
                )
        else:
            assert status == "succeeded", where
            phase = (
                "killed after the commit, before the snapshot was replaced (checkpoint/copy)"
                if latest != run
                else "killed after the new snapshot was in place"
            )
        if latest == run:
            published = run
        if wal_of(settings.warehouse).exists():
            wal_mode = mode(wal_of(settings.warehouse))
            assert wal_mode == 0o600, f"{where}: the WAL's mode is {wal_mode:o}"  # a WAL left by a kill is private too
        phases[phase] = phases.get(phase, 0) + 1
        log.append((trial, kind, seen["at"], phase))

    kills = sum(n for p, n in phases.items() if p.startswith("killed"))
    report = _report(log)
    assert kills >= MIN_KILLS, f"only {kills} kills landed:\n{report}"
    for required in REQUIRED:
        assert any(p.startswith(required) for p in phases), f"no trial was {required}:\n{report}"

    # the next run completes: one segments row per customer, every stale row abandoned, a fresh snapshot
    proc = start_cli(settings, "score", "--all", "--json")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    final = json.loads(out)
    state = read_state(settings.warehouse)
    assert_all_or_nothing(state, "final run")
    assert_one_segment_per_customer(state, "final run")
    assert final["rows_scored"] == CUSTOMERS and state.segment_runs == {final["run_id"]: CUSTOMERS}
    assert all(state.runs[old][0] == "abandoned" for old in stale)
    assert not [r for r, (s, _, _) in state.runs.items() if s not in ("succeeded", "abandoned")]
    assert read_state(settings.snapshot).latest_succeeded() == final["run_id"]
    assert not list(settings.snapshot.parent.glob(f".{settings.snapshot.name}.tmp-*"))  # a killed copy is cleaned up
    print(f"\n{kills} kills of {len(log)} trials, phases: {json.dumps(phases, indent=1)}\n{report}")
