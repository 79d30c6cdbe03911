"""Training on a warehouse that already holds values the model cannot use: excluded and counted, never a crash."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd

from mallscore.specs import get_spec
from mallscore.training.job import USABLE_MAX, exclude_unusable

EXTREME = {9001: 1e308, 9002: float("inf"), 9003: 3e38, 9004: 1e38}  # income in k$


def _plant(warehouse) -> None:
    """Rows an older ingest let in, written straight into the table (as they would sit in an old warehouse)."""
    con = duckdb.connect(str(warehouse))
    try:
        for i, (cid, income) in enumerate(EXTREME.items()):
            con.execute(
                "insert into raw_customers values (?, ?, 30, ?, ?, 'L-old', timestamp '2026-01-01')",
                [cid, "Male" if i % 2 else "Female", income, 80 if i % 2 else 20],
            )
    finally:
        con.close()


def test_train_excludes_extreme_values_counts_them_in_the_card_and_exits_0(cli, settings):
    assert cli("synth", "--rows", "300", "--seed", "11").returncode == 0
    _plant(settings.warehouse)
    out = cli("train", "--budget", "quick", "--json")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "RuntimeWarning" not in out.stderr
    result = json.loads(out.stdout)
    card = json.loads(open(result["card"], encoding="utf-8").read())
    data = card["training_data"]
    assert data["excluded_rows"] == len(EXTREME)
    assert data["excluded_by_feature"] == {"annual_income": len(EXTREME)}
    assert data["rows"] == data["population_rows"] - len(EXTREME)


def test_exclude_unusable_keeps_usable_rows_and_counts_each_row_once():
    spec = get_spec("default")
    frame = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 5, 6],
            "age": [30.0, 200.0, 40.0, 50.0, 11.0, 35.0],  # 200 and 11 are outside 12..120
            "annual_income": [50.0, 1e308, USABLE_MAX, np.inf, -1.0, USABLE_MAX * 1.01],
            "gender_female": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
            "high_spender": [1, 0, 1, 0, 1, 0],
        }
    )
    frame.attrs["population_rows"] = 6
    kept, excluded = exclude_unusable(frame, spec)
    assert kept["customer_id"].tolist() == [1, 3]
    assert excluded == {"age": 2, "annual_income": 2}
    assert kept.attrs["population_rows"] == 6
