"""Helpers for the fault-injection tests: a big real warehouse, the real CLI as a process, and the invariants.

Every check here reads real DuckDB files through short read-only connections
(closed before the next process needs the lock). The invariants are the ones a
nightly job owes its readers after any crash:

* every run is all-or-nothing: a ``succeeded`` run has exactly ``rows_scored``
  rows in ``segment_history`` and ``rows_rejected`` rows in ``rejected_rows``;
  any other run (``running``, ``aborted``, ``abandoned``, ``failed``) has none;
* ``segments`` holds one row per customer;
* the same holds inside the analyst snapshot, whose segments all come from its
  own latest succeeded run (``--all`` runs rescore everyone).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb

from mallscore.settings import Settings
from tests.scoring_support import REPO, cli_env, seed_customers, write_model

WIDE_RANGES = {"age": (12.0, 120.0), "annual_income": (0.0, 10_000.0)}  # no synthetic customer is rejected


def big_warehouse(root: Path, customers: int, *, known_share: float = 0.5, seed: int = 11) -> Settings:
    """A real warehouse with ``customers`` synthetic customers and a champion model ``v1`` (wide ranges)."""
    settings = Settings(warehouse=root / "wh" / "mallscore.duckdb", models_dir=root / "models", lock_timeout=5)
    known = int(customers * known_share)
    seed_customers(settings, known=known, new=customers - known, seed=seed)
    write_model(settings.models_dir, "v1", ranges=WIDE_RANGES)
    return settings


def start_cli(settings: Settings, *args: str, **extra_env: str) -> subprocess.Popen:
    """Start ``python -m mallscore ARGS`` as a real process (stdout/stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "mallscore", *args],
        env=cli_env(settings, **extra_env),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def size(path: Path) -> int:
    """Size of ``path`` in bytes, -1 when it does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def wal_of(path: Path) -> Path:
    """The write-ahead log DuckDB keeps beside ``path``."""
    return path.with_name(path.name + ".wal")


@dataclass
class State:
    """What one DuckDB file shows: runs, per-run row counts, and the segments table."""

    runs: dict[str, tuple[str, int | None, int | None]]  # run_id -> (status, rows_scored, rows_rejected)
    history: dict[str, int]
    rejected: dict[str, int]
    segments: tuple[int, int]  # rows, distinct customers
    segment_runs: dict[str, int]
    customers: int
    error: dict[str, str | None]

    def latest_succeeded(self) -> str | None:
        """The newest succeeded run id (run ids sort by start time)."""
        done = sorted(r for r, (status, _, _) in self.runs.items() if status == "succeeded")
        return done[-1] if done else None


def read_state(path: Path) -> State:
    """Open ``path`` read-only (it must open) and read what the invariants need."""
    con = duckdb.connect(str(path), read_only=True, config={"enable_external_access": "false"})
    try:
        rows = con.execute("select run_id, status, rows_scored, rows_rejected, error from scoring_runs").fetchall()
        history = dict(con.execute("select run_id, count(*) from segment_history group by run_id").fetchall())
        rejected = dict(
            con.execute(
                "select run_id, count(*) from rejected_rows where run_id is not null group by run_id"
            ).fetchall()
        )
        segments = con.execute("select count(*), count(distinct customer_id) from segments").fetchall()[0]
        segment_runs = dict(con.execute("select run_id, count(*) from segments group by run_id").fetchall())
        customers = con.execute("select count(*) from raw_customers").fetchall()[0][0]
    finally:
        con.close()
    return State(
        {r[0]: (r[1], r[2], r[3]) for r in rows},
        history,
        rejected,
        tuple(segments),
        segment_runs,
        customers,
        {r[0]: r[4] for r in rows},
    )


def assert_all_or_nothing(state: State, where: str) -> None:
    """Every run is wholly visible (succeeded) or not at all; no rows belong to an unknown run."""
    unknown = (set(state.history) | set(state.rejected)) - set(state.runs)
    assert not unknown, f"{where}: rows of runs with no scoring_runs row: {unknown}"
    for run_id, (status, scored, rejected) in state.runs.items():
        got = (state.history.get(run_id, 0), state.rejected.get(run_id, 0))
        if status == "succeeded":
            assert got == (scored, rejected), (
                f"{where}: run {run_id} succeeded with {scored}/{rejected} rows, shows {got}"
            )
        else:
            assert got == (0, 0), f"{where}: run {run_id} is {status} but {got} of its rows are visible"


def assert_one_segment_per_customer(state: State, where: str) -> None:
    """Exactly one segments row per customer."""
    assert state.segments == (state.customers, state.customers), (
        f"{where}: segments has {state.segments[0]} rows for {state.segments[1]} customers; expected {state.customers}"
    )


def mode(path: Path) -> int:
    """Permission bits of ``path``."""
    return os.stat(path).st_mode & 0o777
