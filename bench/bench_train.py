"""Benchmark: wall time of `mallscore train` (full budget) on 200 and on 100,000 customers, and where it goes.

Data: for each size in BENCH_TRAIN_ROWS (default "200,100000") a fresh warehouse
of that many synthetic customers (`mallscore synth`; a warehouse with more than
20,000 labelled customers is sampled to 20,000 by design), or, with
BENCH_TRAIN_CSV, that file (for example the public Mall Customers file) in place
of the first size. Runs the real CLI in a subprocess (imports included) for each
spec in BENCH_TRAIN_SPECS (default "default"; "seed" runs with --allow-leakage),
BENCH_TRAIN_REPEATS times (default 3; the figures are medians), and prints the
wall time, the per-stage split reported by the job, and two ratios:

* the largest size against the smallest (issue 16's target: <= 3x);
* the smallest against a named baseline: the notebook's single GridSearchCV over
  the same grid on the same rows (no nested CV, no repeats, no bootstrap, no
  export, no report), timed in this process (only for sizes up to 1,000 rows).

BENCH_TRAIN_BUDGET=quick (default full) gives a smoke run in seconds.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mallscore.warehouse import build, connect  # noqa: E402

STAGES = ("searches", "holdout", "repeated_cv", "bootstrap", "export", "report", "register")


def prepare(tmp: Path, rows: int, first: bool) -> tuple[Path, str]:
    warehouse = tmp / f"bench-{rows}.duckdb"
    con = connect(warehouse)
    build(con)
    source = os.environ.get("BENCH_TRAIN_CSV") if first else None
    if source:
        from mallscore.ingest import ingest_csv

        ingest_csv(con, Path(source))
        label = f"{source}"
    else:
        from mallscore.synth import synth_customers

        synth_customers(con, rows, seed=3)
        label = f"{rows} synthetic customers"
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


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    specs = os.environ.get("BENCH_TRAIN_SPECS", "default").split(",")
    sizes = [int(n) for n in os.environ.get("BENCH_TRAIN_ROWS", "200,100000").split(",")]
    repeats = int(os.environ.get("BENCH_TRAIN_REPEATS", "3"))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        print(f"bench_train: sizes {sizes}, {repeats} repeat(s) each (medians), {os.cpu_count()} cores")
        for spec in specs:
            walls: dict[int, float] = {}
            for k, rows in enumerate(sizes):
                warehouse, label = prepare(tmp, rows, k == 0)
                runs = [run_train(warehouse, tmp / "models", spec) for _ in range(repeats)]
                wall = _median([w for w, _ in runs])
                walls[rows] = wall
                result = runs[0][1]
                timings = {key: _median([r["timings"][key] for _, r in runs]) for key in runs[0][1]["timings"]}
                print(
                    f"\nspec {spec}, {label} ({result['n_configs']} configurations, search on "
                    f"{result.get('search_rows', 'all')} rows): nested-CV ROC-AUC "
                    f"{result['nested_cv_roc_auc']['mean']:.3f} +- {result['nested_cv_roc_auc']['std']:.3f}"
                )
                print(
                    f"  wall time of `mallscore train` {wall:6.1f} s  (runs: {', '.join(f'{w:.1f}' for w, _ in runs)})"
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
                if rows <= 1000:
                    baseline = notebook_baseline(warehouse, spec)
                    print(
                        f"  baseline: notebook's single GridSearchCV {baseline:5.1f} s; "
                        f"train / baseline = {wall / baseline:.1f}x"
                    )
            small, large = min(walls), max(walls)
            if large != small:
                ratio = walls[large] / walls[small]
                print(
                    f"\nspec {spec}: train on {large} customers / train on {small} = {ratio:.2f}x "
                    f"(target <= 3x: {'ok' if ratio <= 3 else 'MISSED'})"
                )


if __name__ == "__main__":
    main()
