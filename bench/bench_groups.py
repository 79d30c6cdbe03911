"""Benchmark: the nightly scoring run with behaviour groups vs the same run without (target <= 1.10).

BENCH_GROUPS_ROWS (default 10,000,000) customers, all with a known spending score, so every
row is grouped (the worst case: a new customer has no score and costs the groups nothing). The
same warehouse is scored by real `mallscore score --json` subprocesses with two models folders
that differ only by a groups champion, interleaved, each run into an emptied `segments`
(BENCH_REPEATS, default 3, medians of the run's own time without the snapshot publish).
The baseline is the same job without groups: the fastest honest way to write the same segments.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bench_scoring  # noqa: E402

from mallscore.settings import Settings  # noqa: E402
from mallscore.synth import generate, synth_customers  # noqa: E402
from mallscore.warehouse import build, connect  # noqa: E402


def train_groups_champion(models_dir: Path) -> str:
    """A groups champion trained (auto k) on 20,000 synthetic customers with a score."""
    import numpy as np

    from mallscore.groups.job import train_groups

    t = generate(20_000, seed=0)
    X = np.column_stack([t.column(c).to_numpy().astype(float) for c in ("annual_income", "spending_score")])
    ids = t.column("customer_id").to_numpy().astype(np.int64)
    result = train_groups(Settings(models_dir=models_dir), X, ids, len(ids))
    return result["version"]


def _grouped(settings: Settings) -> int:
    """Customers with a behaviour group in segments (untimed, after a run)."""
    con = connect(settings.warehouse)
    try:
        return con.execute("select count(behaviour_group) from segments").fetchall()[0][0]
    finally:
        con.close()


def main() -> None:
    rows = bench_scoring._env_int("BENCH_GROUPS_ROWS", 10_000_000)
    repeats = bench_scoring._env_int("BENCH_REPEATS", 3)
    out_dir = HERE / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix="groups-") as tmp:
        root = Path(tmp)
        b = bench_scoring.Bench(root)  # models/: the classifier champion only
        with_groups = root / "models_groups"
        shutil.copytree(b.models_dir, with_groups)
        version = train_groups_champion(with_groups)
        settings = Settings(warehouse=root / "wh" / "mallscore.duckdb", models_dir=b.models_dir, lock_timeout=60)
        con = connect(settings.warehouse)
        try:
            con.execute("set enable_progress_bar = false")
            build(con, check=False)
            synth_customers(con, rows, seed=1)  # every customer has a score: every one gets a group
            con.execute("checkpoint")
        finally:
            con.close()
        timings: dict[str, list[float]] = {"without": [], "with": []}
        phases = {}
        # fixed before the loop: b.models_dir is switched per run, and reading it inside the loop made
        # every "without" run after the first use the groups champion too (the ratio read about 1.0)
        sides = (("without", b.models_dir), ("with", with_groups))
        for _ in range(repeats):
            for kind, models in sides:
                b.reset(settings)
                b.models_dir = models
                run, _, _ = b.score(settings)
                assert run["rows_scored"] == rows, run
                grouped_now = _grouped(settings)
                assert grouped_now == (rows if kind == "with" else 0), (kind, grouped_now)  # each side did its job
                timings[kind].append(run["seconds"]["total"] - run["seconds"]["publish"])
                phases[kind] = run["seconds"]
        grouped = _grouped(settings)
    ours, base = statistics.median(timings["with"]), statistics.median(timings["without"])
    print(
        f"groups: {rows:,} customers with a score ({grouped:,} grouped by {version}): score with groups {ours:.2f}s "
        f"vs without {base:.2f}s: ratio {ours / base:.3f} (target <= 1.10); runs with {timings['with']}, "
        f"without {timings['without']}; phases of the last runs {phases}"
    )
    result = {"rows": rows, "with_s": ours, "without_s": base, "ratio": ours / base, **timings}
    (out_dir / "groups.json").write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
