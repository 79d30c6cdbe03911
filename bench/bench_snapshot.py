"""Where to write the old storage format that DuckDB 1.x clients read: in the warehouse, or only in the snapshot.

At BENCH_SNAPSHOT_ROWS (default 10,000,000) new customers, two warehouses:

* ``portable``: created in DuckDB 1.1's storage format (what mallscore creates
  now); the snapshot is a plain copy of the checkpointed file.
* ``latest``: created in DuckDB 2.0's own format (a warehouse made before this
  change); the snapshot's copy is re-encoded into the old format.

For each, a real ``mallscore score --json`` subprocess scores every customer:
the run's own time (``total - publish``) and the snapshot publish (checkpoint,
copy or re-encode, check, rename) are medians over BENCH_REPEATS (default 3),
the two warehouses' runs interleaved.
Prints publish / run (target < 1) and the portable warehouse's run time against
the latest one's (the price of the older format on the run itself).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_scoring import Bench  # noqa: E402

from mallscore.settings import Settings  # noqa: E402
from mallscore.snapshot import storage_number  # noqa: E402
from mallscore.synth import synth_customers  # noqa: E402
from mallscore.warehouse import build, connect, create_database  # noqa: E402


def make_warehouse(b: Bench, rows: int, storage: str) -> Settings:
    """A warehouse of ``rows`` new customers created in ``storage`` ('portable' or 'latest')."""
    settings = Settings(
        warehouse=b.root / f"{storage}{rows}" / "mallscore.duckdb", models_dir=b.models_dir, lock_timeout=60
    )
    settings.warehouse.parent.mkdir(mode=0o700)
    if storage == "latest":
        create_database(settings.warehouse, "latest")
    con = connect(settings.warehouse)
    try:
        con.execute("set enable_progress_bar = false")
        build(con, check=False)
        synth_customers(con, rows, seed=1, new=True)
        con.execute("checkpoint")
    finally:
        con.close()
    return settings


def score_once(b: Bench, settings: Settings, rows: int) -> tuple[float, float]:
    """One run over every customer: (the run's own seconds, the snapshot publish's seconds)."""
    b.reset(settings)
    run, _, _ = b.score(settings)
    assert run["rows_scored"] == rows, run
    return run["seconds"]["total"] - run["seconds"]["publish"], run["seconds"]["publish"]


def main() -> dict:
    rows = int(os.environ.get("BENCH_SNAPSHOT_ROWS", 10_000_000))
    repeats = int(os.environ.get("BENCH_REPEATS", 3))
    how = {"portable": "file copy", "latest": "re-encoded"}
    results = {}
    with tempfile.TemporaryDirectory(prefix="mallscore-bench-snapshot-") as tmp:
        b = Bench(Path(tmp))
        warehouses = {storage: make_warehouse(b, rows, storage) for storage in how}
        times: dict[str, list[tuple[float, float]]] = {storage: [] for storage in how}
        for _ in range(repeats):  # interleaved, so a busy moment on the machine hits both alike
            for storage, settings in warehouses.items():
                times[storage].append(score_once(b, settings, rows))
        for storage, settings in warehouses.items():
            r = results[storage] = {
                "run_s": statistics.median(t[0] for t in times[storage]),
                "publish_s": statistics.median(t[1] for t in times[storage]),
                "warehouse_number": storage_number(settings.warehouse),
                "snapshot_number": storage_number(settings.snapshot),
                "snapshot_bytes": settings.snapshot.stat().st_size,
                "runs": times[storage],
            }
            print(
                f"snapshot: {rows:,} customers, warehouse {storage} (storage number {r['warehouse_number']}): "
                f"run {r['run_s']:.2f}s, snapshot publish ({how[storage]}, number {r['snapshot_number']}, "
                f"{r['snapshot_bytes'] / 2**20:,.0f} MiB) {r['publish_s']:.2f}s = {r['publish_s'] / r['run_s']:.2f} "
                f"of the run (target < 1)",
                flush=True,
            )
    portable, latest = results["portable"], results["latest"]
    print(
        f"snapshot: run in the portable format / run in 2.0's format: {portable['run_s'] / latest['run_s']:.2f}; "
        f"re-encoded publish / file-copy publish: {latest['publish_s'] / portable['publish_s']:.1f}x"
    )
    return results


if __name__ == "__main__":
    main()
