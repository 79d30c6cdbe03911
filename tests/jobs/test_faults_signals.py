"""Ctrl-C in the middle of a real run, and two real runs launched at the same moment."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.fault_support import (
    assert_all_or_nothing,
    assert_one_segment_per_customer,
    big_warehouse,
    read_state,
    size,
    start_cli,
)


def _wait_for_growth(proc, path: Path, grow_by: int, timeout: float = 60) -> None:
    base = size(path)
    deadline = time.monotonic() + timeout
    while size(path) <= base + grow_by:
        assert proc.poll() is None, f"the run ended before it was interrupted: {proc.communicate()}"
        assert time.monotonic() < deadline, "the run never started writing"
        time.sleep(0.002)


@pytest.mark.slow
def test_ctrl_c_mid_write_rolls_back_marks_the_run_aborted_and_exits_130(tmp_path: Path) -> None:
    settings = big_warehouse(tmp_path, 1_000_000, known_share=0.0)
    proc = start_cli(settings, "score", "--quiet")
    _wait_for_growth(proc, settings.warehouse, 1 << 20)  # inside the run's transaction, writing segments
    os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground process
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err
    assert out == "" and len(err.splitlines()) == 1
    assert "stopped by SIGINT: rolled back, nothing written" in err and "Traceback" not in err
    state = read_state(settings.warehouse)
    assert_all_or_nothing(state, "after Ctrl-C")
    [(run_id, (status, _, _))] = state.runs.items()
    assert status == "aborted" and "SIGINT" in state.error[run_id] and "rolled back" in state.error[run_id]
    assert state.segments == (0, 0) and state.history == {}
    assert not settings.snapshot.exists()  # nothing was published

    again = start_cli(settings, "score", "--json")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    state = read_state(settings.warehouse)
    assert json.loads(out)["rows_scored"] == 1_000_000
    assert sorted(s for s, _, _ in state.runs.values()) == ["aborted", "succeeded"]
    assert_one_segment_per_customer(state, "after the rerun")


def _first_to_exit(*procs, timeout: float = 120):
    """Poll until one of ``procs`` has exited; return (that one, the other)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                return proc, next(p for p in procs if p is not proc)
        time.sleep(0.005)
    pytest.fail(f"neither run ended within {timeout}s")


@pytest.mark.slow
def test_two_runs_launched_at_once_one_completes_the_other_exits_75_naming_it(tmp_path: Path) -> None:
    settings = big_warehouse(tmp_path, 1_000_000)
    first = start_cli(settings, "score", "--json", "--lock-timeout", "0.3")
    second = start_cli(settings, "score", "--json", "--lock-timeout", "0.3")
    early, late = _first_to_exit(first, second)
    assert late.poll() is None  # polled after the early one's exit was seen: the other run was still running
    outputs = {p.pid: p.communicate(timeout=120) for p in (first, second)}
    results = {p.pid: (p.returncode, *outputs[p.pid]) for p in (first, second)}

    assert (results[early.pid][0], results[late.pid][0]) == (75, 0), (
        results
    )  # the loser gave up before the winner ended
    winner, loser = late.pid, early.pid
    _, out, err = results[loser]
    assert out == "" and len(err.splitlines()) == 1
    assert re.search(rf"locked by .*\(PID {winner}\)", err), err  # names the holder: the winner held the lock then
    assert "gave up after 0.3s" in err

    run = json.loads(results[winner][1])
    state = read_state(settings.warehouse)
    assert list(state.runs) == [run["run_id"]] and run["status"] == "succeeded"  # the loser wrote no run row
    assert_all_or_nothing(state, "after the overlap")
    assert_one_segment_per_customer(state, "after the overlap")
    snapshot = read_state(settings.snapshot)
    assert snapshot.latest_succeeded() == run["run_id"] and snapshot.segments == state.segments
