"""The Spark job against the DuckDB job on the same customers, on the same 2 cores, and Spark's startup.

BENCH_SPARK_ROWS (default 2,000,000) customers (3 in 4 with a spending score),
one warehouse and the same rows as Parquet:

1. `duckdb_job`: the nightly job, `mallscore score --all --json` as a real
   subprocess on a fresh copy of the warehouse (wall time, and the run's own
   ``seconds.total``). The baseline: what one machine does today.
2. `spark_job`: `python jobs/spark_score.py --master local[2]` on the Parquet
   file, a real subprocess (wall time, including the JVM start), and the job's
   own ``seconds`` from run.json (features, scoring and both writes, without
   the start).
3. `spark_startup`: a subprocess that starts a local[2] session, counts one
   row and stops: what every Spark run pays before it reads anything.

Medians over BENCH_REPEATS (default 3). Spark is expected to be slower on one
machine; the point of the Spark job is that the same SQL scales out.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import duckdb  # noqa: E402
from bench_scoring import fit_and_register  # noqa: E402

from mallscore.synth import synth_customers  # noqa: E402
from mallscore.warehouse import build, connect  # noqa: E402

STARTUP = (
    "from mallscore.spark_job import spark_session\n"
    "s = spark_session('local[2]', 'bench-startup', **{'spark.ui.enabled': 'false'})\n"
    "s.range(1).count()\n"
    "s.stop()\n"
)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _timed(args: list[str], env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done, wall


def main() -> None:
    rows = _env_int("BENCH_SPARK_ROWS", 2_000_000)
    repeats = _env_int("BENCH_REPEATS", 3)
    with tempfile.TemporaryDirectory(prefix="mallscore-bench-spark-") as tmp:
        root = Path(tmp)
        models_dir = root / "models"
        fit_and_register(models_dir)
        pristine = root / "pristine" / "mallscore.duckdb"
        con = connect(pristine)
        try:
            build(con, check=False)
            synth_customers(con, rows * 3 // 4, seed=5)
            synth_customers(con, rows - rows * 3 // 4, seed=6, new=True)
            con.execute("checkpoint")
        finally:
            con.close()
        parquet = root / "customers.parquet"
        reader = duckdb.connect(str(pristine), read_only=True)  # the warehouse's connect() forbids file access
        try:
            reader.execute(
                "copy (select customer_id, gender, age, annual_income, spending_score from raw_customers) "
                f"to '{parquet}' (format parquet)"
            )
        finally:
            reader.close()
        model_dir = models_dir / "default" / "bench-v1"

        duck_wall, duck_own, spark_wall, spark_own, startup = [], [], [], [], []
        for i in range(repeats):
            warehouse = root / f"wh{i}" / "mallscore.duckdb"
            warehouse.parent.mkdir()
            shutil.copy(pristine, warehouse)
            env = {**os.environ, "MALLSCORE_WAREHOUSE": str(warehouse), "MALLSCORE_MODELS_DIR": str(models_dir)}
            done, wall = _timed([sys.executable, "-m", "mallscore", "score", "--all", "--json"], env)
            run = json.loads(done.stdout)
            duck_wall.append(wall)
            duck_own.append(run["seconds"]["total"])
            shutil.rmtree(warehouse.parent)

            out = root / f"spark_out{i}"
            job = [sys.executable, str(REPO / "jobs" / "spark_score.py"), "--master", "local[2]"]
            job += ["--model", str(model_dir), "--input", str(parquet), "--output", str(out)]
            done, wall = _timed(job)
            result = json.loads((out / "run.json").read_text())
            if (result["rows_scored"], result["rows_rejected"]) != (run["rows_scored"], run["rows_rejected"]):
                raise SystemExit(f"the Spark job and the DuckDB job disagree: {result} vs {run}")
            spark_wall.append(wall)
            spark_own.append(result["seconds"])
            shutil.rmtree(out)

            _, wall = _timed([sys.executable, "-c", STARTUP])
            startup.append(wall)

    med = statistics.median
    print(f"   {rows:,} customers ({run['rows_scored']:,} scored, {run['rows_rejected']:,} rejected), 2 cores")
    print(
        f"   duckdb_job (mallscore score --all, whole process)   {med(duck_wall):7.2f}s  (run's own {med(duck_own):.2f}s)"
    )
    print(
        f"   spark_job  (spark_score.py local[2], whole process) {med(spark_wall):7.2f}s  (job's own {med(spark_own):.2f}s)"
    )
    print(f"   spark_startup (session up, one row, stop)          {med(startup):7.2f}s")
    print(
        f"   ratio spark_job / duckdb_job: {med(spark_wall) / med(duck_wall):.1f}x whole process, "
        f"{med(spark_own) / med(duck_own):.1f}x without the start (target: none; Spark scales out, DuckDB does not)"
    )


if __name__ == "__main__":
    main()
