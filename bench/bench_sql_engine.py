"""`mallscore score --engine sql` against `mallscore score` (onnxruntime), and the bare exported SQL.

All three score every customer of the same warehouse with the same model:

* ``onnx``: ``score_customers(settings, "all")``, the nightly job's default path
  (contract validation, streaming Arrow batches through onnxruntime, writing
  ``segments``, the archive and the run row, one transaction);
* ``sql``: ``score_customers(settings, "all", engine="sql")``, the same job with
  the model compiled to SQL and scored inside DuckDB (same bookkeeping);
* ``ctas``: ``create table ... as <export-sql output>`` in the same DuckDB file,
  the bare in-engine computation with no run bookkeeping.

The snapshot publish is left out of both jobs (``publish=False``).

    python bench/bench_sql_engine.py                       # 10,000,000 customers, 3 repeats
    python bench/bench_sql_engine.py --rows 1000000 --repeats 1

Sizes also come from BENCH_SCORE_ROWS / BENCH_REPEATS when set (bench/run.py --quick).
Prints medians, rows/s and the ratios, and checks the engines agree (max |dp|).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402

from mallscore.scoring import score_customers  # noqa: E402
from mallscore.settings import Settings  # noqa: E402
from mallscore.sqlexport import export_sql  # noqa: E402
from mallscore.synth import synth_customers  # noqa: E402
from mallscore.warehouse import build, connect  # noqa: E402


def _forget_runs(settings: Settings) -> None:
    con = connect(settings.warehouse)
    try:
        for table in ("segments", "segment_archive", "scoring_runs"):
            con.execute(f"delete from {table}")
        con.execute("checkpoint")
    finally:
        con.close()


def main() -> None:
    """Build a warehouse and a model, time both engines alternately, print the figures."""
    from tests.scoring_support import write_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_SCORE_ROWS", 10_000_000)))
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", 3)))
    args = parser.parse_args([] if __name__ != "__main__" else None)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(warehouse=Path(tmp) / "bench.duckdb", models_dir=Path(tmp) / "models", lock_timeout=5)
        write_model(settings.models_dir, "bench")
        con = connect(settings.warehouse)
        build(con)
        synth_customers(con, args.rows, seed=5, new=True)
        con.close()
        sql = export_sql(settings.models_dir, dialect="duckdb")
        times: dict[str, list[float]] = {"onnx": [], "sql": [], "ctas": []}
        for _ in range(args.repeats):
            for engine in ("onnx", "sql"):
                _forget_runs(settings)  # both engines score 10M new customers: no archive to move
                started = time.perf_counter()
                run = score_customers(settings, "all", publish=False, engine=engine)
                times[engine].append(time.perf_counter() - started)
                assert run["rows_scored"] == args.rows and run["engine"] == engine, run
                if engine == "onnx":
                    con = duckdb.connect(str(settings.warehouse))
                    con.execute("create or replace table segments_onnx as select * from segments")
                    con.close()
            con = connect(settings.warehouse)
            started = time.perf_counter()
            con.execute(f"create or replace table segments_sql as {sql}")
            times["ctas"].append(time.perf_counter() - started)
            con.close()
        check = duckdb.connect(str(settings.warehouse), read_only=True)
        diff, labels, n = check.execute(
            "select max(abs(s.p_high_spender - o.p_high_spender)), count(*) filter (where s.segment <> o.segment "
            "or s.predicted_high_spender <> o.predicted_high_spender), count(*) "
            "from segments s join segments_onnx o using (customer_id)"
        ).fetchall()[0]
        check.close()
    m = {k: statistics.median(v) for k, v in times.items()}
    print(f"sql engine: {args.rows:,} customers (all new; no snapshot), median of {args.repeats}:")
    print(f"  score --engine onnx (onnxruntime) : {m['onnx']:8.2f} s  ({args.rows / m['onnx']:,.0f} rows/s)")
    print(f"  score --engine sql  (in DuckDB)   : {m['sql']:8.2f} s  ({args.rows / m['sql']:,.0f} rows/s)")
    print(f"  bare exported SQL (create as)     : {m['ctas']:8.2f} s")
    print(
        f"  sql engine / onnx engine: {m['sql'] / m['onnx']:.2f}; sql engine / bare SQL: {m['sql'] / m['ctas']:.2f}; "
        f"{n:,} customers compared, max |dp| {diff:.2e}, {labels} segment or label difference(s)"
    )


if __name__ == "__main__":
    main()
