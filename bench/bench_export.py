"""Exporting segments to Parquet: ``mallscore segments --output x.parquet`` vs DuckDB's own COPY.

A warehouse of BENCH_EXPORT_ROWS (default 10,000,000) segmented customers,
stored in no particular order (as a nightly run leaves them).
mallscore's export (the library call behind the command: open read-only, the
query of sql/exports/segments.sql in customer order, COPY to a temporary name
on a connection allowed only that path, mode, rename) against the baseline
``duckdb_copy``: a read-only connection running ``COPY segments TO ... (FORMAT
parquet)``. Medians over BENCH_REPEATS (default 3), interleaved. Target <= 2x.
Also prints the whole ``mallscore segments --output`` process (with its imports)
and the csv export, for reference.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import duckdb  # noqa: E402
from bench_publish import make_warehouse  # noqa: E402

from mallscore.exports import export_to_file, segments_query  # noqa: E402
from mallscore.settings import Settings  # noqa: E402


def duckdb_copy(warehouse: Path, out: Path) -> float:
    started = time.perf_counter()
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute(f"copy segments to '{out}' (format parquet)")
    finally:
        con.close()
    return time.perf_counter() - started


def mallscore_export(settings: Settings, out: Path, fmt: str = "parquet") -> float:
    started = time.perf_counter()
    result = export_to_file(settings, segments_query(), fmt, out)
    elapsed = time.perf_counter() - started
    assert result.rows == int(os.environ.get("BENCH_EXPORT_ROWS", 10_000_000)), result
    return elapsed


def cli_process(settings: Settings, out: Path) -> float:
    env = {**os.environ, "MALLSCORE_WAREHOUSE": str(settings.warehouse), "PYTHONPATH": str(HERE.parent)}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mallscore", "segments", "--output", str(out)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> dict:
    rows = int(os.environ.get("BENCH_EXPORT_ROWS", 10_000_000))
    repeats = int(os.environ.get("BENCH_REPEATS", 3))
    with tempfile.TemporaryDirectory(prefix="mallscore-bench-export-") as tmp:
        root = Path(tmp)
        settings = Settings(warehouse=root / "mallscore.duckdb")
        con = make_warehouse(settings.warehouse, rows)
        # a nightly run writes segments in no particular order: so does this table, and the export sorts it
        con.execute("create table shuffled as select * from segments order by hash(customer_id)")
        con.execute("drop table segments")
        con.execute("alter table shuffled rename to segments")
        con.execute("checkpoint")
        con.close()
        ours, base, process, csv = [], [], [], []
        for _ in range(repeats):
            base.append(duckdb_copy(settings.warehouse, root / "base.parquet"))
            ours.append(mallscore_export(settings, root / "ours.parquet"))
            process.append(cli_process(settings, root / "cli.parquet"))
            csv.append(mallscore_export(settings, root / "ours.csv", "csv"))
        check = duckdb.connect()
        counts = [
            check.execute(f"select count(*) from '{root / n}'").fetchall()[0][0]
            for n in ("base.parquet", "ours.parquet")
        ]
        check.close()
        assert counts == [rows, rows], counts
        sizes = {n: (root / n).stat().st_size / 2**20 for n in ("base.parquet", "ours.parquet")}
    o, b = statistics.median(ours), statistics.median(base)
    print(
        f"export: {rows:,} segments to Parquet: mallscore {o:.2f}s ({sizes['ours.parquet']:.0f} MiB) "
        f"vs duckdb_copy {b:.2f}s ({sizes['base.parquet']:.0f} MiB): ratio {o / b:.2f} (target <= 2)"
    )
    print(
        f"export: whole `mallscore segments --output x.parquet` process {statistics.median(process):.2f}s; "
        f"csv export {statistics.median(csv):.2f}s"
    )
    return {"rows": rows, "ours_s": o, "duckdb_copy_s": b, "ratio": o / b, "ours": ours, "base": base}


if __name__ == "__main__":
    main()
