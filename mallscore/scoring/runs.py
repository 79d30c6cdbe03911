"""Reading what runs left behind: the recent runs, and the segment summary from the analyst snapshot."""

from __future__ import annotations

import duckdb

from mallscore.scoring.relations import feature_columns
from mallscore.settings import Settings

RUN_COLUMNS = (
    "run_id",
    "mode",
    "started_at",
    "finished_at",
    "status",
    "model_version",
    "model_sha256",
    "rows_read",
    "rows_scored",
    "rows_rejected",
    "error",
    "engine",
)


def recent_runs(settings: Settings, limit: int = 20) -> list[dict]:
    """The most recent scoring runs, newest first (read-only; waits for the lock like the job)."""
    from mallscore.warehouse import connect

    con = connect(settings.warehouse, read_only=True, lock_timeout=settings.lock_timeout)
    try:
        present = feature_columns(con, "scoring_runs")
        if not present:
            return []
        columns = [c for c in RUN_COLUMNS if c in present]  # a warehouse not yet scored by this version lacks engine
        rows = con.execute(
            f"select {', '.join(columns)} from scoring_runs order by started_at desc, run_id desc limit ?", [limit]
        ).fetchall()
    finally:
        con.close()
    return [{c: None for c in RUN_COLUMNS} | dict(zip(columns, r)) for r in rows]


def segment_summary(settings: Settings) -> list[dict]:
    """``segment_summary`` as read from the analyst snapshot (read-only: never blocks a run)."""
    from mallscore.errors import InputMissingError

    if not settings.snapshot.exists():
        raise InputMissingError(f"no analyst snapshot at {settings.snapshot} yet: run `mallscore score` first")
    con = duckdb.connect(str(settings.snapshot), read_only=True, config={"enable_external_access": "false"})
    try:
        rows = con.execute("select segment, customers, mean_p_high_spender, share from segment_summary").fetchall()
    finally:
        con.close()
    return [dict(zip(("segment", "customers", "mean_p_high_spender", "share"), r)) for r in rows]
