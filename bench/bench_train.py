"""Benchmark: wall time of `mallscore train` (full budget) on 200 customers, and where the time goes.

Data: the CSV named by BENCH_TRAIN_CSV (for example the public Mall Customers
file) ingested into a fresh warehouse, else 200 synthetic customers. Runs the
real CLI in a subprocess (imports included) for each spec in BENCH_TRAIN_SPECS
(default "default"; "seed" runs with --allow-leakage) and prints the wall time,
the per-stage breakdown reported by the job, and the ratio against a named
baseline: the notebook's single GridSearchCV over the same grid (no nested CV,
no repeats, no bootstrap, no export, no report), timed in this process.
Target: under 60 s on a 2-core machine. BENCH_TRAIN_BUDGET=quick (default full)
gives a smoke run in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mallscore.warehouse import build, connect  # noqa: E402

STAGES = ("searches", "holdout", "repeated_cv", "bootstrap", "export", "report", "register")


def prepare(tmp: Path) -> tuple[Path, str]:
    warehouse = tmp / "bench.duckdb"
    con = connect(warehouse)
    build(con)
    source = os.environ.get("BENCH_TRAIN_CSV")
    if source:
        from mallscore.ingest import ingest_csv

        ingest_csv(con, Path(source))
        label = f"{source}"
    else:
        from mallscore.synth import synth_customers

        synth_customers(con, 200, seed=3)
        label = "200 synthetic customers"
    build(con)
    con.close()
    return warehouse, label


def run_train(warehouse: Path, models: Path, spec: str) -> tuple[float, dict]:
    env = {
        **os.environ,
        "MALLSCORE_WAREHOUSE": str(warehouse),
        "MALLSCORE_MODELS_DIR": str(models),
        "PYTHONPATH": str(REPO),
    }
    args = [
        sys.executable,
        "-m",
        "mallscore",
        "train",
        "--spec",
        spec,
        "--json",
        "--no-promote",
        "--budget",
        os.environ.get("BENCH_TRAIN_BUDGET", "full"),
    ]
    if spec == "seed":
        args.append("--allow-leakage")
    start = time.perf_counter()
    out = subprocess.run(args, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"train failed ({out.returncode}): {out.stderr}")
    return wall, json.loads(out.stdout)


def notebook_baseline(warehouse: Path, spec_name: str) -> float:
    from mallscore.specs import get_spec
    from mallscore.training import get_budget, read_training_set
    from mallscore.training.tuning import make_search

    spec = get_spec(spec_name)
    con = connect(warehouse, read_only=True)
    frame = read_training_set(con, spec)
    con.close()
    X, y = frame[spec.feature_names].to_numpy(float), frame[spec.label].to_numpy()
    start = time.perf_counter()
    make_search(spec, get_budget(os.environ.get("BENCH_TRAIN_BUDGET", "full"))).fit(X, y)
    return time.perf_counter() - start


def main() -> None:
    specs = os.environ.get("BENCH_TRAIN_SPECS", "default").split(",")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        warehouse, label = prepare(tmp)
        print(f"bench_train: {label}, {os.cpu_count()} cores")
        for spec in specs:
            wall, result = run_train(warehouse, tmp / "models", spec)
            timings = result["timings"]
            baseline = notebook_baseline(warehouse, spec)
            print(
                f"\nspec {spec}: {result['n_configs']} configurations, nested-CV ROC-AUC "
                f"{result['nested_cv_roc_auc']['mean']:.3f} +- {result['nested_cv_roc_auc']['std']:.3f}"
            )
            print(
                f"  wall time of `mallscore train` {wall:6.1f} s   (target < 60 s: {'ok' if wall < 60 else 'MISSED'})"
            )
            print(f"  imports + CLI + data read      {wall - timings['total']:6.1f} s")
            for stage in STAGES:
                t = timings.get(stage, 0.0)
                print(f"  {stage:<30} {t:6.1f} s  {100 * t / wall:5.1f}%")
            print(f"    of which tuning search        {timings['tuning_search_cpu']:6.1f} s of one worker")
            print(
                f"    of which nested-CV searches   {timings['nested_cv_searches_cpu']:6.1f} s of one worker "
                f"(sum of {result['n_outer_folds']} outer folds)"
            )
            print(f"  baseline: notebook's single search {baseline:5.1f} s; train / baseline = {wall / baseline:.1f}x")


if __name__ == "__main__":
    main()
