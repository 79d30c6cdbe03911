"""Deterministic synthetic customers shaped like the public Mall Customers data.

Five income x spending-score groups (the classic clusters), younger customers
scoring higher, about 56% female; overall means close to the public data (age
~39, income ~60 k$, score ~50, ~48% with score > 50). Generated with vectorised
numpy and handed to DuckDB as Arrow, so 10 million rows take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from mallscore.errors import UsageError

# share, income range (k$), score mean and sd, age mean and sd
GROUPS = (
    ("low_income_low_score", 0.115, (15, 39), (20.0, 10.0), (45.0, 12.0)),
    ("low_income_high_score", 0.110, (15, 39), (79.0, 10.0), (25.0, 5.0)),
    ("mid_income_mid_score", 0.405, (40, 70), (49.5, 6.5), (42.0, 15.0)),
    ("high_income_high_score", 0.195, (69, 105), (82.0, 9.0), (32.5, 4.0)),
    ("high_income_low_score", 0.175, (69, 105), (17.5, 10.0), (41.0, 11.0)),
)
FEMALE_SHARE = 0.56
PUBLIC_HEADER = ("CustomerID", "Gender", "Age", "Annual Income (k$)", "Spending Score (1-100)")


@dataclass(frozen=True)
class SynthResult:
    """What one synthetic batch wrote."""

    rows: int
    first_id: int
    last_id: int
    seed: int
    new: bool
    target: str
    load_id: str | None = None


def generate(rows: int, seed: int = 42, *, new: bool = False, first_id: int = 1) -> pa.Table:
    """Synthetic customers as an Arrow table (public data columns, snake_case)."""
    if rows < 0:
        raise UsageError("--rows must be zero or more")
    rng = np.random.default_rng(seed)
    shares = np.array([g[1] for g in GROUPS])
    group = rng.choice(len(GROUPS), size=rows, p=shares / shares.sum())
    low = np.array([g[2][0] for g in GROUPS])[group]
    high = np.array([g[2][1] for g in GROUPS])[group]
    income = rng.integers(low, high + 1)
    age_mean = np.array([g[4][0] for g in GROUPS])[group]
    age_sd = np.array([g[4][1] for g in GROUPS])[group]
    age = np.clip(np.rint(rng.normal(age_mean, age_sd)), 18, 70).astype(np.int32)
    score_mean = np.array([g[3][0] for g in GROUPS])[group]
    score_sd = np.array([g[3][1] for g in GROUPS])[group]
    # younger customers score higher, within every group
    score = rng.normal(score_mean - 0.1 * (age - age_mean), score_sd)
    score = np.clip(np.rint(score), 1, 100).astype(np.int32)
    female = rng.random(rows) < FEMALE_SHARE
    gender = pa.DictionaryArray.from_arrays(pa.array(female.astype(np.int8)), pa.array(["Male", "Female"]))
    return pa.table(
        {
            "customer_id": pa.array(np.arange(first_id, first_id + rows, dtype=np.int64)),
            "gender": gender,
            "age": pa.array(age),
            "annual_income": pa.array(income.astype(np.float64)),
            "spending_score": pa.nulls(rows, pa.int32()) if new else pa.array(score),
        }
    )


def write_csv(table: pa.Table, path: Path) -> None:
    """Write customers in the public data's CSV format (empty score for new customers)."""
    import pyarrow.csv as pacsv

    renamed = table.cast(
        pa.schema(
            [
                ("customer_id", pa.int64()),
                ("gender", pa.string()),
                ("age", pa.int32()),
                ("annual_income", pa.int64()),
                ("spending_score", pa.int32()),
            ]
        )
    ).rename_columns(list(PUBLIC_HEADER))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write((",".join(PUBLIC_HEADER) + "\n").encode())
        pacsv.write_csv(renamed, handle, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def next_free_id(con: duckdb.DuckDBPyConnection) -> int:
    """The first customer id above every id already in the warehouse."""
    return int(con.execute("select coalesce(max(customer_id), 0) + 1 from raw_customers").fetchall()[0][0])


def synth_customers(con: duckdb.DuckDBPyConnection, rows: int, seed: int = 42, *, new: bool = False) -> SynthResult:
    """Append synthetic customers to the warehouse with ids that collide with none there."""
    from mallscore.ingest import new_load_id

    load_id = new_load_id()
    now = datetime.now(UTC).replace(tzinfo=None)
    con.begin()
    try:
        first_id = next_free_id(con)
        table = generate(rows, seed, new=new, first_id=first_id)
        con.register("synth_batch", table)
        con.execute(
            """
            insert into raw_customers
            select customer_id, cast(gender as varchar), age, annual_income, spending_score, $load_id, $now
            from synth_batch
            """,
            {"load_id": load_id, "now": now},
        )
        con.unregister("synth_batch")
        con.execute(
            "insert into ingest_loads values ($load_id, $source, $now, $now, $rows, $rows, 0, $rows, 0, 0)",
            {"load_id": load_id, "source": f"synth:seed={seed}{':new' if new else ''}", "now": now, "rows": rows},
        )
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return SynthResult(rows, first_id, first_id + rows - 1, seed, new, "warehouse", load_id)
