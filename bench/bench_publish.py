"""Publishing segments to PostgreSQL: mallscore's COPY + swap against pandas ``DataFrame.to_sql``.

Both sides do the whole job from the warehouse: read ``segments`` out of DuckDB
and replace a table in PostgreSQL. The baseline is what a notebook does
(``con.sql(...).df()`` then ``to_sql(if_exists="replace")`` through SQLAlchemy
and psycopg); mallscore streams Arrow batches into ``COPY`` inside one
transaction and also builds the primary key and statistics.

    python bench/bench_publish.py                      # 1,000,000 rows, 3 repeats
    python bench/bench_publish.py --rows 100000 --repeats 1
    python bench/bench_publish.py --url postgresql://user@host/db   # an existing server

Without --url a throw-away server is started as in the tests (needs the
PostgreSQL server binaries). Prints medians and the ratio (target >= 10x).
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

from mallscore.publish import publish_from  # noqa: E402
from mallscore.synth import synth_customers  # noqa: E402
from mallscore.warehouse import build, connect  # noqa: E402


def make_warehouse(path: Path, rows: int):
    """A warehouse with ``rows`` customers, all segmented by one run."""
    con = connect(path)
    build(con)
    synth_customers(con, rows, seed=11)
    con.execute(
        """
        insert into segments
        select customer_id, case when p >= 0.7 then 'gold' when p >= 0.4 then 'silver' else 'bronze' end,
               p, p >= 0.5, 'model', 'bench', 'R-bench', now()::timestamp, updated_at
        from (select customer_id, updated_at, 1 / (1 + exp((age - 38) / 7.0)) as p from features_customer)
        """
    )
    con.execute(
        "insert into scoring_runs (run_id, mode, started_at, finished_at, status, model_version, model_sha256, rows_read, rows_scored, rows_rejected, error) values ('R-bench', 'nightly', now()::timestamp, now()::timestamp, 'ok', "
        "'bench', 'x', ?, ?, 0, null)",
        [rows, rows],
    )
    return con


def run_to_sql(con, url: str) -> float:
    """The notebook baseline: the whole table into pandas, then DataFrame.to_sql through SQLAlchemy."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    from mallscore.database import parse_url

    started = time.perf_counter()
    frame = con.sql("select * from segments order by customer_id").df()
    engine = sqlalchemy.create_engine(parse_url(url), poolclass=NullPool)
    with engine.begin() as conn:
        frame.to_sql("bench_to_sql", conn, if_exists="replace", index=False)
    engine.dispose()
    return time.perf_counter() - started


def run_mallscore(con, url: str) -> float:
    """mallscore publish: Arrow batches -> COPY into a staging table -> swap, one transaction."""
    started = time.perf_counter()
    publish_from(con, url, "bench_publish")
    return time.perf_counter() - started


def main() -> None:
    """Parse options, run both sides alternately, print medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_PUBLISH_ROWS", 1_000_000)))
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", 3)))
    parser.add_argument("--url", help="an existing PostgreSQL database (default: start a throw-away server)")
    args = parser.parse_args()

    server = None
    url = args.url
    if url is None:
        from tests.pg_server import start_server

        server = start_server()
        url = server.url()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            con = make_warehouse(Path(tmp) / "bench.duckdb", args.rows)
            ours, baseline = [], []
            for _ in range(args.repeats):
                ours.append(run_mallscore(con, url))
                baseline.append(run_to_sql(con, url))
            con.close()
    finally:
        if server is not None:
            server.stop()
    m_ours, m_base = statistics.median(ours), statistics.median(baseline)
    print(f"publish {args.rows:,} segments to PostgreSQL, median of {args.repeats}:")
    print(f"  DataFrame.to_sql (SQLAlchemy) : {m_base:8.2f} s  ({args.rows / m_base:,.0f} rows/s)")
    print(f"  mallscore publish (COPY+swap) : {m_ours:8.2f} s  ({args.rows / m_ours:,.0f} rows/s)")
    print(f"  ratio: {m_base / m_ours:.1f}x faster (target >= 10x)")


if __name__ == "__main__":
    main()
