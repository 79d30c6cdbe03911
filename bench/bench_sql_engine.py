"""Scoring inside DuckDB with the exported SQL against the scoring job (onnxruntime).

Both sides score every customer of the same warehouse with the same model:

* ``score``: ``score_customers(settings, "all")``, the nightly job's path
  (contract validation, streaming Arrow batches through onnxruntime, writing
  ``segments`` and the run row);
* ``sql``: ``create table ... as <export-sql output>`` in the same DuckDB file,
  the core of ``score --engine sql`` (no run bookkeeping).

    python bench/bench_sql_engine.py                       # 10,000,000 customers, 3 repeats
    python bench/bench_sql_engine.py --rows 1000000 --repeats 1

Prints medians, rows/s and the ratio, and checks the two agree (max |dp|).
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    """Build a warehouse and a model, time both engines alternately, print the figures."""
    from tests.scoring_support import write_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(warehouse=Path(tmp) / "bench.duckdb", models_dir=Path(tmp) / "models", lock_timeout=5)
        write_model(settings.models_dir, "bench")
        con = connect(settings.warehouse)
        build(con)
        synth_customers(con, args.rows, seed=5, new=True)
        con.close()
        sql = export_sql(settings.models_dir, dialect="duckdb")
        job, engine = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            score_customers(settings, "all", publish=False)
            job.append(time.perf_counter() - started)
            con = connect(settings.warehouse)
            started = time.perf_counter()
            con.execute(f"create or replace table segments_sql as {sql}")
            engine.append(time.perf_counter() - started)
            con.close()
        check = duckdb.connect(str(settings.warehouse), read_only=True)
        diff, n = check.execute("select max(abs(s.p_high_spender - q.p_high_spender)), count(*) "
                                "from segments s join segments_sql q using (customer_id)").fetchall()[0]
        check.close()
    m_job, m_sql = statistics.median(job), statistics.median(engine)
    print(f"score {args.rows:,} customers in DuckDB, median of {args.repeats}:")
    print(f"  score (onnxruntime, nightly job) : {m_job:8.2f} s  ({args.rows / m_job:,.0f} rows/s)")
    print(f"  exported SQL (create table as)   : {m_sql:8.2f} s  ({args.rows / m_sql:,.0f} rows/s)")
    print(f"  ratio: {m_job / m_sql:.2f}x; {n:,} customers compared, max |dp| {diff:.2e}")


if __name__ == "__main__":
    main()
