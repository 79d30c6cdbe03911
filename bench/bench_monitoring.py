"""Benchmark: what drift and top reasons add to the nightly scoring run (issue 13: at most 10%).

The same run, with and without: BENCH_SCORE_ROWS (default 10,000,000) new
customers scored by `mallscore score --json` (real subprocesses, reset
between runs), once with a model whose card carries the reference
distributions (drift of every feature and the score, and segments.top_reason
for every predicted customer) and once with the *same* ONNX model under a
card without them (an older card: drift only writes `no reference` rows,
top_reason is null). Runs alternate, so a busy machine slows both alike.
Timed: the run's own time (total minus the snapshot publish), medians of
BENCH_REPEATS (default 3). Models (BENCH_MONITOR_MODELS, default
"scale,bins"): the scaled logistic regression of bench_scoring, and the
same features in 5 quantile bins (one-hot; training's other preprocessing,
whose graph compiles to many more SQL columns). BENCH_MONITOR_ENGINES
(default "onnx") may add "sql".
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mallscore import registry  # noqa: E402
from mallscore.synth import generate  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_scoring", REPO / "bench" / "bench_scoring.py")
bench_scoring = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_scoring)


def _training_rows():
    import numpy as np

    t = generate(20_000, seed=0)
    x = np.column_stack(
        [
            t.column("age").to_numpy().astype(float),
            t.column("annual_income").to_numpy().astype(float),
            (t.column("gender").cast("string").to_numpy(zero_copy_only=False) == "Female").astype(float),
        ]
    )
    return x, (t.column("spending_score").to_numpy() > 50).astype(int)


def _binned_pipeline(x, y):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import KBinsDiscretizer

    bins = KBinsDiscretizer(
        n_bins=5, encode="onehot-dense", strategy="quantile", quantile_method="averaged_inverted_cdf"
    )
    prep = ColumnTransformer([("bins5", bins, [0, 1]), ("passthrough", "passthrough", [2])])
    return make_pipeline(prep, LogisticRegression()).fit(x, y)


def register_pair(models_dir: Path, base_card: dict, pipe, name: str) -> tuple[str, str]:
    """The same ONNX model twice: ``<name>-plain`` (no reference) and ``<name>-ref`` (with); returns both versions."""
    import numpy as np

    from mallscore.monitoring import build_reference
    from mallscore.training.export import convert, onnx_probabilities

    x, _ = _training_rows()
    features = [f["name"] for f in base_card["features"]]
    data = convert(pipe, features)  # the training job's export
    versions = []
    for suffix, reference in (("plain", False), ("ref", True)):
        card = copy.deepcopy({k: v for k, v in base_card.items() if k != "card_sha256"})
        card["version"] = f"bench-{name}-{suffix}"
        card["onnx"]["sha256"] = hashlib.sha256(data).hexdigest()
        if reference:
            p = onnx_probabilities(data, features, x.astype(np.float32))
            card["reference"] = build_reference(card["features"], x, p)
        registry.register(models_dir, card, {"model.onnx": data})
        versions.append(card["version"])
    return versions[0], versions[1]


def main() -> None:
    repeats = int(os.environ.get("BENCH_REPEATS", 3))
    rows = int(os.environ.get("BENCH_SCORE_ROWS", 10_000_000))
    models = os.environ.get("BENCH_MONITOR_MODELS", "scale,bins").split(",")
    engines = os.environ.get("BENCH_MONITOR_ENGINES", "onnx").split(",")
    out_dir = REPO / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix="monitoring-") as tmp:
        b = bench_scoring.Bench(Path(tmp))
        settings = b.warehouse(rows)
        x, y = _training_rows()
        pipes = {"scale": b.pipe, "bins": _binned_pipeline(x, y) if "bins" in models else None}
        for name in models:
            plain, ref = register_pair(b.models_dir, b.card, pipes[name], name)
            for engine in engines:
                times: dict[str, list[float]] = {"without": [], "with": []}
                monitor: list[float] = []
                for _ in range(repeats):
                    for label, version in (("without", plain), ("with", ref)):
                        b.reset(settings)
                        run, _, _ = b.score(settings, "--model", version, "--engine", engine)
                        assert run["rows_scored"] == rows, run
                        times[label].append(run["seconds"]["total"] - run["seconds"]["publish"])
                        if label == "with":
                            monitor.append(run["seconds"]["monitor"])
                            statuses = {d["status"] for d in run["drift"]}
                            assert statuses <= {"ok", "warn"}, run["drift"]
                reasons = bench_scoring.connect(settings.warehouse, read_only=True)
                try:
                    with_reason = reasons.execute("select count(top_reason) from segments").fetchall()[0][0]
                finally:
                    reasons.close()
                assert with_reason == rows, with_reason  # every customer is new: every one has a reason
                base, ours = statistics.median(times["without"]), statistics.median(times["with"])
                print(
                    f"monitoring [{name}, {engine}]: {rows:,} new customers: run with drift + top_reason {ours:.2f}s "
                    f"vs the same run without (card without reference) {base:.2f}s: ratio {ours / base:.3f} "
                    f"(target <= 1.10); drift phase median {statistics.median(monitor):.2f}s; "
                    f"runs with {[round(t, 2) for t in times['with']]}, without {[round(t, 2) for t in times['without']]}",
                    flush=True,
                )
                results[f"{name}-{engine}"] = {
                    "rows": rows,
                    "with_s": ours,
                    "without_s": base,
                    "ratio": ours / base,
                    "monitor_s": statistics.median(monitor),
                    "with": times["with"],
                    "without": times["without"],
                }
    (out_dir / "monitoring.json").write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
