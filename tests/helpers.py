"""Arrange helpers for tests: a real DuckDB warehouse with customers, segments and runs."""

from __future__ import annotations

from pathlib import Path

from mallscore.settings import Settings
from mallscore.synth import synth_customers
from mallscore.warehouse import build, connect


def warehouse_with_segments(
    tmp_path: Path,
    customers: int = 1000,
    run_id: str = "R20261127T010000Z-aaaaaa",
    seed: int = 3,
    name: str = "wh.duckdb",
) -> Settings:
    """A warehouse with ``customers`` synthetic customers, all segmented by one successful run."""
    settings = Settings(warehouse=tmp_path / name, models_dir=tmp_path / "models", lock_timeout=5)
    con = connect(settings.warehouse)
    try:
        build(con)
        if customers:
            synth_customers(con, customers, seed)
        fill_segments(con, run_id)
    finally:
        con.close()
    return settings


def fill_segments(con, run_id: str, model_version: str = "m1") -> None:
    """Replace segments with a deterministic score of every customer, and record the run."""
    con.execute("delete from segments")
    con.execute(
        """
        insert into segments by name
        select customer_id,
               case when p >= 0.7 then 'gold' when p >= 0.4 then 'silver' else 'bronze' end as segment,
               p as p_high_spender, p >= 0.5 as predicted_high_spender, 'model' as basis, $v as model_version,
               $run as run_id, timestamp '2026-11-27 01:00:00' as scored_at, updated_at as customer_updated_at
        from (select customer_id, updated_at, 1 / (1 + exp((age - 38) / 7.0 + 0.1 / 3)) as p from features_customer)
        """,
        {"v": model_version, "run": run_id},
    )
    n = con.execute("select count(*) from segments").fetchall()[0][0]
    con.execute("delete from scoring_runs where run_id = ?", [run_id])
    con.execute(
        "insert into scoring_runs (run_id, mode, started_at, finished_at, status, model_version, model_sha256, rows_read, rows_scored, rows_rejected, error) values (?, 'nightly', timestamp '2026-11-27 01:00:00', timestamp '2026-11-27 01:00:05',"
        " 'ok', ?, 'abc123', ?, ?, 0, null)",
        [run_id, model_version, n, n],
    )


def labelled_features(n: int = 200, seed: int = 0):
    """(X, y) shaped like the default spec's features: younger customers are more often high spenders."""
    import numpy as np

    rng = np.random.default_rng(seed)
    age = rng.integers(18, 70, n).astype(float)
    income = rng.integers(15, 137, n).astype(float)
    female = (rng.random(n) < 0.56).astype(float)
    y = ((70 - age) / 50 + rng.normal(0, 0.4, n) > 0.5).astype(int)
    return np.column_stack([age, income, female]), y
