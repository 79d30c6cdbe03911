"""Benchmark: synthesise N new customers into a fresh warehouse.

Baseline (same run): a DuckDB `create table as select ... from range(N)` that
writes the same columns with random values in-engine, the floor for any
generator. Prints medians over repeats and the ratio. Size: BENCH_SYNTH_ROWS
(default 10,000,000), repeats: BENCH_REPEATS (default 3).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mallscore.synth import synth_customers  # noqa: E402
from mallscore.warehouse import build, connect  # noqa: E402


def _fresh(tmp: Path, name: str):
    path = tmp / f"{name}.duckdb"
    for p in (path, path.with_suffix(".duckdb.wal")):
        p.unlink(missing_ok=True)
    con = connect(path)
    build(con)
    return con


def time_synth(tmp: Path, rows: int) -> float:
    con = _fresh(tmp, "synth")
    start = time.perf_counter()
    synth_customers(con, rows, seed=1, new=True)
    con.execute("checkpoint")
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


def time_baseline(tmp: Path, rows: int) -> float:
    con = _fresh(tmp, "baseline")
    start = time.perf_counter()
    con.execute(
        """
        insert into raw_customers
        select range + 1, case when random() < 0.56 then 'Female' else 'Male' end,
               18 + cast(floor(random() * 53) as integer), 15 + floor(random() * 91), null, 'B', now()
        from range($n)
        """,
        {"n": rows},
    )
    con.execute("checkpoint")
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


def main() -> None:
    rows = int(os.environ.get("BENCH_SYNTH_ROWS", 10_000_000))
    repeats = int(os.environ.get("BENCH_REPEATS", 3))
    with tempfile.TemporaryDirectory() as tmp:
        ours = statistics.median(time_synth(Path(tmp), rows) for _ in range(repeats))
        base = statistics.median(time_baseline(Path(tmp), rows) for _ in range(repeats))
    print(
        f"synth: {rows:,} new customers into the warehouse: median {ours:.2f}s "
        f"({rows / ours / 1e6:.1f} M rows/s); baseline duckdb_range_insert {base:.2f}s; ratio {ours / base:.2f}x"
    )


if __name__ == "__main__":
    main()
