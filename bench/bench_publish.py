"""Publishing segments to PostgreSQL: mallscore's incremental and full publish against pandas ``DataFrame.to_sql``.

Every side does the whole job from the warehouse: read ``segments`` out of
DuckDB and leave a PostgreSQL table equal to it. The baseline is what a
notebook does (``con.sql(...).df()`` then ``to_sql(if_exists="replace")``
through SQLAlchemy and psycopg, one transaction). mallscore's sides:

* first publish: a new table, Arrow batches -> binary COPY, key built after;
* full (``--full``): the live table's rows deleted and all rows COPYed again
  (row changes only, safe for every reader);
* incremental (the default): the target holds the previous run; the rows of
  the new run (CHANGED customers: 80% rescored, 10% new, 10% removed) go
  through a staging table and one UPDATE / INSERT / key-compared DELETE.

Before each repeat the warehouse gets a new run touching CHANGED customers;
the incremental and the full target both hold the previous run. Before each
timed side the server is settled (untimed CHECKPOINT, no autovacuum worker
running), so no side pays for the previous side's background work.

    python bench/bench_publish.py                      # 1,000,000 rows, 10,000 changed, 3 repeats
    python bench/bench_publish.py --rows 100000 --changed 1000 --repeats 1
    python bench/bench_publish.py --url postgresql://user@host/db   # an existing server

Without --url a throw-away server is started as in the tests (needs the
PostgreSQL server binaries). Prints medians and ratios (targets: incremental
>= 5x faster than full; full >= 10x faster than to_sql).
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
        insert into segments by name
        select customer_id, case when p >= 0.7 then 'gold' when p >= 0.4 then 'silver' else 'bronze' end as segment,
               p as p_high_spender, p >= 0.5 as predicted_high_spender, 'model' as basis, 'bench' as model_version,
               'R-bench-0000' as run_id, timestamp '2026-11-01 01:00:00' as scored_at,
               updated_at as customer_updated_at
        from (select customer_id, updated_at, 1 / (1 + exp((age - 38) / 7.0)) as p from features_customer)
        """
    )
    _log_run(con, "R-bench-0000", 0, rows)
    return con


def _log_run(con, run_id: str, day: int, rows: int) -> None:
    con.execute(
        "insert into scoring_runs (run_id, mode, started_at, finished_at, status, model_version, model_sha256, "
        "rows_read, rows_scored, rows_rejected, error) values ($run, 'nightly', "
        "timestamp '2026-11-01 01:00:00' + to_days($day), timestamp '2026-11-01 01:00:00' + to_days($day), "
        "'succeeded', 'bench', 'x', $n, $n, 0, null)",
        {"run": run_id, "day": day, "n": rows},
    )


def next_run(con, day: int, changed: int) -> None:
    """A nightly run touching ``changed`` customers: 80% rescored, 10% new, 10% removed."""
    run_id = f"R-bench-{day:04d}"
    new = removed = changed // 10
    rescored = changed - new - removed
    at = {"run": run_id, "day": day}
    # as a run does: the rows it replaces or removes move to segment_archive
    removed_ids = "(select customer_id from segments order by hash(customer_id, $day) limit $n)"
    con.execute(
        f"insert into segment_archive by name select *, $run as archived_by_run from segments where customer_id in {removed_ids}",
        {"n": removed, "day": day, "run": run_id},
    )
    con.execute(f"delete from segments where customer_id in {removed_ids}", {"n": removed, "day": day})
    rescored_ids = "(select customer_id from segments order by hash(customer_id, $day, 'rescore') limit $n)"
    con.execute(
        f"insert into segment_archive by name select *, $run as archived_by_run from segments where customer_id in {rescored_ids}",
        {"n": rescored, "day": day, "run": run_id},
    )
    con.execute(
        """
        update segments set p_high_spender = 1 - p_high_spender, predicted_high_spender = not predicted_high_spender,
               segment = case segment when 'gold' then 'bronze' else 'gold' end, run_id = $run,
               scored_at = timestamp '2026-11-01 01:00:00' + to_days($day)
        where customer_id in """
        + rescored_ids,
        {**at, "n": rescored},
    )
    con.execute(
        """
        insert into segments by name
        select customer_id + (select max(customer_id) from segments) as customer_id, segment, p_high_spender,
               predicted_high_spender, basis, model_version, $run as run_id,
               timestamp '2026-11-01 01:00:00' + to_days($day) as scored_at, customer_updated_at
        from segments order by customer_id limit $n
        """,
        {**at, "n": new},
    )
    _log_run(con, run_id, day, rescored + new)
    # a scoring run commits with a checkpoint (the job's checkpoint_threshold): leave the warehouse as it would
    con.execute("checkpoint")


def run_to_sql(con, url: str) -> float:
    """The notebook baseline: the whole table into pandas, then DataFrame.to_sql through SQLAlchemy."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    from mallscore.database import parse_url

    settle(url)
    started = time.perf_counter()
    frame = con.sql("select * from segments order by customer_id").df()
    engine = sqlalchemy.create_engine(parse_url(url), poolclass=NullPool)
    with engine.begin() as conn:
        frame.to_sql("bench_to_sql", conn, if_exists="replace", index=False)
    engine.dispose()
    return time.perf_counter() - started


def drop(url: str, *tables: str) -> None:
    """Drop bench tables between repeats (not timed)."""
    import psycopg

    from mallscore.database import parse_url

    dsn = parse_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as c:
        for table in tables:
            c.execute(f'drop table if exists "{table}"')


def settle(url: str, timeout: float = 60.0) -> None:
    """Untimed, before each side: a CHECKPOINT (where the role may), then wait until no autovacuum worker runs, so no side pays
    for the background work the previous one caused (to_sql and the first publish each insert 1M rows,
    which sets autovacuum off on a 2-core machine while the next side is timed)."""
    import psycopg

    from mallscore.database import parse_url

    dsn = parse_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as c:
        try:
            c.execute("checkpoint")
        except psycopg.errors.InsufficientPrivilege:
            pass  # a role without pg_checkpoint: the wait below still applies
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = c.execute("select count(*) from pg_stat_activity where backend_type = 'autovacuum worker'")
            if busy.fetchone()[0] == 0:
                return
            time.sleep(0.2)


def timed_publish(con, url: str, table: str, *, full: bool, expect: str) -> float:
    """One mallscore publish (after :func:`settle`); checks the mode it ran in."""
    settle(url)
    started = time.perf_counter()
    result = publish_from(con, url, table, full=full)
    seconds = time.perf_counter() - started
    assert result["mode"] == expect, result
    return seconds


def main() -> None:
    """Parse options, run every side in each repeat, print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_PUBLISH_ROWS", 1_000_000)))
    parser.add_argument("--changed", type=int, default=int(os.environ.get("BENCH_PUBLISH_CHANGED", 10_000)))
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", 3)))
    parser.add_argument("--url", help="an existing PostgreSQL database (default: start a throw-away server)")
    args = parser.parse_args()

    server = None
    url = args.url
    if url is None:
        from tests.pg_server import start_server

        server = start_server()
        url = server.url()
    times: dict[str, list[float]] = {"first": [], "full": [], "incremental": [], "to_sql": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            con = make_warehouse(Path(tmp) / "bench.duckdb", args.rows)
            drop(url, "bench_incremental", "bench_incremental_runs", "bench_full", "bench_full_runs")
            publish_from(con, url, "bench_incremental")
            publish_from(con, url, "bench_full")
            for day in range(1, args.repeats + 1):
                next_run(con, day, args.changed)
                times["incremental"].append(
                    timed_publish(con, url, "bench_incremental", full=False, expect="incremental")
                )
                times["full"].append(timed_publish(con, url, "bench_full", full=True, expect="full"))
                drop(url, "bench_first", "bench_first_runs")
                times["first"].append(timed_publish(con, url, "bench_first", full=False, expect="full"))
                times["to_sql"].append(run_to_sql(con, url))
            con.close()
            drop(url, "bench_incremental", "bench_incremental_runs", "bench_full", "bench_full_runs")
            drop(url, "bench_first", "bench_first_runs", "bench_to_sql")
    finally:
        if server is not None:
            server.stop()
    m = {k: statistics.median(v) for k, v in times.items()}
    print(f"publish {args.rows:,} segments to PostgreSQL ({args.changed:,} changed per run), median of {args.repeats}:")
    print(f"  DataFrame.to_sql of the whole table  : {m['to_sql']:8.2f} s")
    print(f"  mallscore first publish (new table)  : {m['first']:8.2f} s  ({args.rows / m['first']:,.0f} rows/s)")
    print(f"  mallscore full publish (--full)      : {m['full']:8.2f} s  ({args.rows / m['full']:,.0f} rows/s)")
    print(f"  mallscore incremental publish        : {m['incremental']:8.2f} s")
    print(f"  incremental vs full    : {m['full'] / m['incremental']:.1f}x faster (target >= 5x)")
    print(f"  incremental vs to_sql  : {m['to_sql'] / m['incremental']:.1f}x faster")
    print(f"  full vs to_sql         : {m['to_sql'] / m['full']:.1f}x faster (target >= 10x)")
    print(f"  first publish vs to_sql: {m['to_sql'] / m['first']:.1f}x faster")
    for side in ("incremental", "full"):
        print(f"  {side} runs (s): {', '.join(f'{t:.3f}' for t in times[side])}")


if __name__ == "__main__":
    main()
