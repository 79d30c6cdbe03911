"""Benchmark: `mallscore models compare` on BENCH_COMPARE_ROWS (default 10,000,000) customers vs one scoring run.

Both models are real (StandardScaler + LogisticRegression, exported with
skl2onnx); the challenger is fitted with ``class_weight="balanced"`` so segments
do change. The baseline, named ``score_all``, is one `mallscore score --all`
run of the champion on the same warehouse (its own timer without the snapshot
publish, and the whole process). Compare scores every customer twice and writes
nothing: target ratio <= 2. Medians over BENCH_REPEATS (default 3) runs, real
subprocesses of the CLI; the machine is shared, so the spread is printed too.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_scoring import FEATURES, REPO, Bench, generate  # noqa: E402

from mallscore import registry  # noqa: E402


def register_challenger(b: Bench) -> str:
    """bench-v2: the champion's pipeline refitted with balanced class weights, registered beside it."""
    import numpy as np

    from mallscore.training.export import convert

    t = generate(20_000, seed=0)
    x = np.column_stack(
        [
            t.column("age").to_numpy().astype(float),
            t.column("annual_income").to_numpy().astype(float),
            (t.column("gender").cast("string").to_numpy(zero_copy_only=False) == "Female").astype(float),
        ]
    )
    y = (t.column("spending_score").to_numpy() > 50).astype(int)
    pipe = b.pipe.set_params(logisticregression__class_weight="balanced").fit(x, y)
    data = convert(pipe, list(FEATURES))  # the training job's export
    card = {k: v for k, v in b.card.items() if k != "card_sha256"}
    card.update(version="bench-v2", onnx={**card["onnx"], "sha256": hashlib.sha256(data).hexdigest()})
    registry.register(b.models_dir, card, {"model.onnx": data})
    return "bench-v2"


def run(b: Bench, settings, *args: str) -> tuple[dict, float]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mallscore", *args], cwd=REPO, env=b.env(settings), capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"mallscore {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout), wall


def main() -> None:
    rows = int(os.environ.get("BENCH_COMPARE_ROWS", 10_000_000))
    repeats = int(os.environ.get("BENCH_REPEATS", 3))
    with tempfile.TemporaryDirectory() as tmp:
        b = Bench(Path(tmp))
        settings = b.warehouse(rows)
        challenger = register_challenger(b)
        score_own, score_wall, cmp_own, cmp_wall = [], [], [], []
        for _ in range(repeats):
            b.reset(settings)
            result, wall = run(b, settings, "score", "--all", "--json")
            assert result["rows_scored"] == rows, result
            score_own.append(result["seconds"]["total"] - result["seconds"]["publish"])
            score_wall.append(wall)
            result, wall = run(b, settings, "models", "compare", challenger, "--json")
            assert result["customers"] == rows, result
            cmp_own.append(result["seconds"])
            cmp_wall.append(wall)
        med = statistics.median
        print(f"bench_compare: {rows:,} customers, {repeats} repeat(s), medians, {os.cpu_count()} cores")
        print(
            f"  models compare: {med(cmp_own):.2f}s own timer, {med(cmp_wall):.2f}s whole process "
            f"(runs {', '.join(f'{v:.2f}' for v in cmp_wall)}); changed_share {result['changed_share']:.3f}, "
            f"label_flips {result['label_flips']:,}"
        )
        print(
            f"  baseline score_all: {med(score_own):.2f}s own timer without publish, {med(score_wall):.2f}s whole "
            f"process (runs {', '.join(f'{v:.2f}' for v in score_wall)})"
        )
        ratio = med(cmp_wall) / med(score_wall)
        print(
            f"  compare / score_all: {med(cmp_own) / med(score_own):.2f}x own timers, {ratio:.2f}x whole processes "
            f"(target <= 2x: {'ok' if ratio <= 2 else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
