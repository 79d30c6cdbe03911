"""Benchmarks of the nightly scoring job against named baselines measured in the same run.

1. scoring: BENCH_SCORE_ROWS (default 10,000,000) new customers, `mallscore score`
   (validate, score, write segments + history, log; the run's own timer, without
   the snapshot publish) vs `duckdb_ctas_logit`: one in-engine CREATE TABLE AS
   computing the same logistic probability and writing the same columns.
   Target ratio <= 1.3. The snapshot publish is timed separately (target: below
   the run's own time).
2. notebook: BENCH_NOTEBOOK_ROWS (default 100,000) customers, the same run vs
   `notebook_pandas`: pandas.read_sql through SQLAlchemy, predict_proba,
   DataFrame.to_sql. Target >= 50x faster.
3. memory: peak RSS of `mallscore score` at BENCH_MEMORY_SMALL_ROWS (1,000,000)
   and BENCH_MEMORY_LARGE_ROWS (10,000,000). Target growth <= 1.2x.
4. rescore: whole-process `mallscore rescore <id>` vs `python -c "import sklearn"`,
   medians over BENCH_RESCORE_REPEATS (default 7). Target ratio < 1.

5. all: `mallscore score --all` on an already-scored warehouse of BENCH_SCORE_ROWS
   customers (every segment replaced and archived) vs `duckdb_archive_then_ctas`: the same
   work in the engine (every current segment copied to segment_archive, deleted, the new
   ones inserted, one transaction). Target ratio <= 1.3. Also printed: the ratio to
   `duckdb_ctas_logit`, which writes half the rows (no archive).

6. nightly: BENCH_NIGHTLY_CHANGED (default 1,000) changed customers out of BENCH_SCORE_ROWS already
   scored, `mallscore score` vs `duckdb_nightly_in_engine`: the same work in the engine (choose the
   changed customers by their keys, archive and delete their segments, insert the new ones, one
   transaction). No target: it shows what a quiet night costs on a large warehouse.

BENCH_SCORING_PARTS (default "scoring,all,nightly,notebook,memory,rescore") picks some of them.

Every timing is a median over BENCH_REPEATS (default 3) runs; scoring runs are
real subprocesses of the CLI on real DuckDB files, reset between repeats.
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
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mallscore import registry  # noqa: E402
from mallscore.contract import basis_sql, bound, contract_from_card, contract_params, segment_sql  # noqa: E402
from mallscore.scoring.run import JOB_SETTINGS, tune  # noqa: E402
from mallscore.settings import Settings  # noqa: E402
from mallscore.synth import generate, synth_customers  # noqa: E402
from mallscore.training.export import convert  # noqa: E402
from mallscore.warehouse import build, connect  # noqa: E402

FEATURES = ("age", "annual_income", "gender_female")
TIERS = [
    {"name": "premium", "min_p": 0.7, "min_score": 75},
    {"name": "loyalty", "min_p": 0.5, "min_score": 51},
    {"name": "nurture", "min_p": 0.35, "min_score": 35},
    {"name": "low_priority", "min_p": 0.0, "min_score": 1},
]


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# --- set-up ------------------------------------------------------------------------------


def fit_and_register(models_dir: Path):
    """A StandardScaler + LogisticRegression on synthetic customers, exported and registered as champion."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t = generate(20_000, seed=0)
    x = np.column_stack(
        [
            t.column("age").to_numpy().astype(float),
            t.column("annual_income").to_numpy().astype(float),
            (t.column("gender").cast("string").to_numpy(zero_copy_only=False) == "Female").astype(float),
        ]
    )
    y = (t.column("spending_score").to_numpy() > 50).astype(int)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    data = convert(pipe, list(FEATURES))  # the training job's export: the graph `mallscore train` registers
    card = {
        "card_format": registry.CARD_FORMAT,
        "spec": "default",
        "version": "bench-v1",
        "feature_table": "features_customer",
        "features": [
            {"name": "age", "type": "float32", "min": 12.0, "max": 120.0, "values": None},
            {"name": "annual_income", "type": "float32", "min": 0.0, "max": None, "values": None},
            {"name": "gender_female", "type": "float32", "min": None, "max": None, "values": [0.0, 1.0]},
        ],
        "onnx": {
            "file": "model.onnx",
            "sha256": hashlib.sha256(data).hexdigest(),
            "inputs": list(FEATURES),
            "probability_output": "probabilities",
        },
        "threshold": 0.5,
        "tiers": TIERS,
        "promotable": True,
    }
    registry.register(models_dir, card, {"model.onnx": data})
    registry.promote(models_dir, "bench-v1", reason="benchmark")
    return pipe, registry.load_card(models_dir, "bench-v1")


class Bench:
    """Warehouses of given sizes (created once) and the champion model, in a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.models_dir = root / "models"
        self.pipe, self.card = fit_and_register(self.models_dir)
        self._warehouses: dict[int, Settings] = {}

    def warehouse(self, rows: int) -> Settings:
        if rows not in self._warehouses:
            settings = Settings(
                warehouse=self.root / f"wh{rows}" / "mallscore.duckdb", models_dir=self.models_dir, lock_timeout=60
            )
            con = connect(settings.warehouse)
            try:
                con.execute("set enable_progress_bar = false")
                build(con, check=False)
                synth_customers(con, rows, seed=1, new=True)
                con.execute("checkpoint")
            finally:
                con.close()
            self._warehouses[rows] = settings
        return self._warehouses[rows]

    def reset(self, settings: Settings) -> None:
        """Forget every scoring run, so the next run sees only new customers."""
        con = connect(settings.warehouse)
        try:
            for table in ("segments", "segment_archive", "scoring_runs"):
                con.execute(f"delete from {table}")
            con.execute("delete from rejected_rows where run_id is not null")
            for table in ("bench_ctas_segments", "segments_notebook"):
                con.execute(f"drop table if exists {table}")
            con.execute("checkpoint")
        finally:
            con.close()
        settings.snapshot.unlink(missing_ok=True)

    def env(self, settings: Settings) -> dict:
        return {
            **os.environ,
            "MALLSCORE_WAREHOUSE": str(settings.warehouse),
            "MALLSCORE_MODELS_DIR": str(self.models_dir),
            "PYTHONPATH": str(REPO),
        }

    def score(self, settings: Settings, *args: str) -> tuple[dict, float, int]:
        """One real `mallscore score --json [ARGS]` subprocess: (run row, wall seconds, peak RSS bytes).

        The CLI is started from a small launcher process: a child forked from this
        (large) benchmark process would report this process's RSS as its peak.
        """
        launcher = (
            "import resource, subprocess, sys, time\n"
            "t = time.perf_counter()\n"
            "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "wall = time.perf_counter() - t\n"
            "sys.stderr.write(done.stderr)\n"
            "print(done.returncode, wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "print(done.stdout, end='')\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", launcher, sys.executable, "-m", "mallscore", "score", "--json", *args],
            cwd=REPO,
            env=self.env(settings),
            capture_output=True,
            text=True,
        )
        first, _, out = done.stdout.partition("\n")
        code, wall, maxrss_kib = first.split()
        if int(code) != 0:
            raise SystemExit(f"mallscore score failed ({code}): {done.stderr.strip()}")
        return json.loads(out), float(wall), int(maxrss_kib) * 1024


# --- baselines -------------------------------------------------------------------------------


def double_literal(value: float) -> str:
    """A SQL literal DuckDB types as DOUBLE: exponent form (``0.92`` would be a slow high-precision DECIMAL)."""
    return f"{float(value):.17e}"


# The baseline's table: segments' own columns and types (its label columns are ENUMs once a run made them
# so, mallscore.labels), empty. Created inside the baseline's timing.
BASELINE_TABLE_SQL = "create table bench_ctas_segments as select * from segments limit 0"


def ctas_logit_sql(
    card: dict, pipe, target: str = "bench_ctas_segments", source: str = "features_customer"
) -> tuple[str, dict]:
    """The in-engine baseline: the same probability, tiers and columns (all of segments') in one INSERT ... SELECT
    into :data:`BASELINE_TABLE_SQL`'s copy of segments' schema (so it stores the same types the run stores).

    Every coefficient is written as a double literal: DuckDB reads ``-0.9209972588293478`` as
    DECIMAL(16,16), and DECIMAL arithmetic made the baseline about 1.8x slower than it should be.
    """
    contract = contract_from_card(card)
    scaler, lr = pipe[0], pipe[-1]
    d = double_literal
    terms = " + ".join(
        f"{d(w)} * ({name} - {d(m)}) / {d(s)}"
        for name, w, m, s in zip(FEATURES, lr.coef_[0], scaler.mean_, scaler.scale_)
    )
    sql = f"""
insert into {target}
with features as (
    select * from {source}
),

scored as (
    select customer_id, updated_at, spending_score as observed_score,
           {d(1)} / ({d(1)} + exp(-({d(lr.intercept_[0])} + {terms}))) as p
    from features
)

select customer_id, {segment_sql(contract)} as segment, p as p_high_spender, p >= $threshold as predicted_high_spender,
       {basis_sql()} as basis, $model_version as model_version, $run_id as run_id, $scored_at as scored_at,
       updated_at as customer_updated_at,
       -- the columns segments gained since (issues 13 and 17), as a run of this model without a reference
       -- and without a groups model writes them: the same table, column for column
       cast(null as varchar) as behaviour_group, cast(null as varchar) as behaviour_model_version,
       cast(null as varchar) as top_reason
from scored
"""
    params = {
        **contract_params(contract),
        "model_version": contract.version,
        "run_id": "CTAS",
        "scored_at": datetime.now(),
    }
    return sql, bound(sql, params)


def time_ctas(settings: Settings, sql: str, params: dict) -> float:
    started = time.perf_counter()
    con = connect(settings.warehouse)
    try:
        tune(con, JOB_SETTINGS)  # the job's engine tuning (not its memory cap): the same engine for both sides
        con.execute(BASELINE_TABLE_SQL)
        con.execute(sql, params)
        elapsed = time.perf_counter() - started
        con.execute("drop table bench_ctas_segments")
        con.execute("checkpoint")
    finally:
        con.close()
    return elapsed


SEGMENT_COLUMNS = (
    "customer_id, segment, p_high_spender, predicted_high_spender, basis, model_version, run_id, scored_at, "
    "customer_updated_at, behaviour_group, behaviour_model_version, top_reason"
)
# The same work as `score --all` in the engine: every current segment moved to the archive, then the new ones.
ARCHIVE_ALL_SQL = (
    f"insert into segment_archive ({SEGMENT_COLUMNS}, archived_by_run) select {SEGMENT_COLUMNS}, 'CTAS' from segments"
)


def time_transaction(settings: Settings, statements: list[tuple[str, dict | None]]) -> float:
    """Seconds to connect with the job's engine tuning, run ``statements`` in one transaction and commit."""
    started = time.perf_counter()
    con = connect(settings.warehouse)
    try:
        tune(con, JOB_SETTINGS)
        con.begin()
        for sql, params in statements:
            con.execute(sql, params)
        con.commit()
        elapsed = time.perf_counter() - started
        con.execute("checkpoint")
    finally:
        con.close()
    return elapsed


def time_archive_and_ctas(settings: Settings, sql: str, params: dict) -> float:
    """``duckdb_archive_then_ctas``: in one transaction, archive every segment (one INSERT ... SELECT, no join),
    delete them, insert the new ones with the baseline's logit (``sql`` targeting segments), commit."""
    return time_transaction(settings, [(ARCHIVE_ALL_SQL, None), ("delete from segments", None), (sql, params)])


# The same work as a nightly run with few changes, in the engine: choose the changed customers from the keys,
# archive their segments, delete them, insert the new ones (the baseline's logit over just those customers).
CHOOSE_CHANGED_SQL = (
    "create temp table bench_changed as select f.customer_id from features_customer f "
    "left join segments s using (customer_id) "
    "where s.customer_id is null or f.updated_at is distinct from s.customer_updated_at"
)
CHANGED_FEATURES = "(select * from features_customer semi join bench_changed using (customer_id))"


def time_nightly_in_engine(settings: Settings, sql: str, params: dict) -> float:
    """``duckdb_nightly_in_engine``: one transaction choosing the changed customers by their keys, moving their
    segments to the archive, deleting them and inserting the new ones (``sql`` over :data:`CHANGED_FEATURES`)."""
    return time_transaction(
        settings,
        [
            (CHOOSE_CHANGED_SQL, None),
            (f"{ARCHIVE_ALL_SQL} semi join bench_changed using (customer_id)", None),
            ("delete from segments where customer_id in (select customer_id from bench_changed)", None),
            (sql, params),
        ],
    )


def change_customers(settings: Settings, every: int) -> None:
    """Move ``updated_at`` of every ``every``-th customer a day on (the night's changes)."""
    con = connect(settings.warehouse)
    try:
        con.execute(
            "update raw_customers set updated_at = updated_at + interval 1 day where customer_id % ? = 0", [every]
        )
        con.execute("checkpoint")
    finally:
        con.close()


def time_notebook(settings: Settings, pipe) -> float:
    """The notebook way: read_sql through SQLAlchemy, predict_proba, to_sql back."""
    import pandas as pd
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(f"duckdb:///{settings.warehouse}", poolclass=NullPool)
    try:
        started = time.perf_counter()
        frame = pd.read_sql("select * from features_customer", engine)
        p = pipe.predict_proba(frame[list(FEATURES)].to_numpy(dtype=float))[:, 1]
        out = pd.DataFrame(
            {"customer_id": frame["customer_id"], "p_high_spender": p, "predicted_high_spender": p >= 0.5}
        )
        with engine.begin() as conn:
            out.to_sql("segments_notebook", conn, if_exists="replace", index=False)
        return time.perf_counter() - started
    finally:
        engine.dispose()


def parity(settings: Settings, sql: str, params: dict) -> float:
    """Max |p| difference between the CTAS baseline and the scored segments (sanity: same computation)."""
    con = connect(settings.warehouse)
    try:
        con.execute(BASELINE_TABLE_SQL)
        con.execute(sql, params)
        diff = con.execute(
            "select max(abs(b.p_high_spender - s.p_high_spender)), count(*) filter (where b.segment <> s.segment) "
            "from bench_ctas_segments b join segments s using (customer_id)"
        ).fetchall()[0]
        con.execute("drop table bench_ctas_segments")
    finally:
        con.close()
    return diff


# --- benchmarks ---------------------------------------------------------------------------------


def bench_scoring(b: Bench, repeats: int) -> dict:
    rows = _env_int("BENCH_SCORE_ROWS", 10_000_000)
    settings = b.warehouse(rows)
    sql, params = ctas_logit_sql(b.card, b.pipe)
    runs, publishes, walls, ctas = [], [], [], []
    b.score(settings)  # as in any warehouse scored once: segments' label columns are ENUMs for both sides
    for _ in range(repeats):
        b.reset(settings)
        ctas.append(time_ctas(settings, sql, params))
        run, wall, _ = b.score(settings)
        assert run["rows_scored"] == rows, run
        runs.append(run["seconds"]["total"] - run["seconds"]["publish"])
        publishes.append(run["seconds"]["publish"])
        walls.append(wall)
    max_dp, segment_diffs = parity(settings, sql, params)
    ours, base, pub = statistics.median(runs), statistics.median(ctas), statistics.median(publishes)
    print(
        f"scoring: {rows:,} new customers: mallscore score {ours:.2f}s ({rows / ours / 1e6:.1f} M rows/s; "
        f"phases of the last run {run['seconds']}) vs duckdb_ctas_logit {base:.2f}s: "
        f"ratio {ours / base:.2f} (target <= 1.3)"
    )
    print(
        f"scoring: snapshot publish {pub:.2f}s = {pub / ours:.2f} of the run's own time (target < 1); "
        f"whole process incl. imports and publish {statistics.median(walls):.2f}s"
    )
    print(f"scoring: sanity: CTAS vs onnxruntime max |dp| {max_dp:.2e}, {segment_diffs} segment difference(s)")
    return {
        "rows": rows,
        "run_s": ours,
        "ctas_s": base,
        "ratio": ours / base,
        "publish_s": pub,
        "publish_over_run": pub / ours,
        "wall_s": statistics.median(walls),
        "max_dp": max_dp,
        "segment_diffs": segment_diffs,
        "runs": runs,
        "ctas": ctas,
    }


def bench_scoring_all(b: Bench, repeats: int) -> dict:
    """`mallscore score --all` on an already-scored warehouse (every segment replaced and archived) vs
    ``duckdb_archive_then_ctas``, the same work (archive, delete, insert) done in the engine; and vs the CTAS."""
    rows = _env_int("BENCH_SCORE_ROWS", 10_000_000)
    settings = b.warehouse(rows)
    sql, params = ctas_logit_sql(b.card, b.pipe)
    same_sql, same_params = ctas_logit_sql(b.card, b.pipe, target="segments")
    b.reset(settings)
    b.score(settings)  # everyone scored once: --all now replaces every segment and archives the old ones
    runs, ctas, same = [], [], []
    for _ in range(repeats):
        ctas.append(time_ctas(settings, sql, params))
        same.append(time_archive_and_ctas(settings, same_sql, same_params))
        run, _, _ = b.score(settings, "--all")
        assert run["rows_scored"] == rows, run
        runs.append(run["seconds"]["total"] - run["seconds"]["publish"])
    ours, base, work = statistics.median(runs), statistics.median(ctas), statistics.median(same)
    print(
        f"scoring --all: {rows:,} already-scored customers: mallscore score --all {ours:.2f}s "
        f"(phases of the last run {run['seconds']}) vs the same work in the engine (archive every segment, "
        f"delete, insert the new ones, one transaction): duckdb_archive_then_ctas {work:.2f}s: ratio "
        f"{ours / work:.2f} (target <= 1.3)"
    )
    print(
        f"scoring --all: vs duckdb_ctas_logit {base:.2f}s (no archive: half the rows written): ratio {ours / base:.2f}"
    )
    return {
        "rows": rows,
        "run_s": ours,
        "ctas_s": base,
        "ratio": ours / base,
        "same_work_s": work,
        "same_work_ratio": ours / work,
        "runs": runs,
        "ctas": ctas,
        "same_work": same,
    }


def bench_nightly(b: Bench, repeats: int) -> dict:
    """A nightly run with few changes on a large warehouse: BENCH_NIGHTLY_CHANGED (default 1,000) changed
    customers out of BENCH_SCORE_ROWS already scored, `mallscore score` vs ``duckdb_nightly_in_engine``."""
    rows = _env_int("BENCH_SCORE_ROWS", 10_000_000)
    changed = _env_int("BENCH_NIGHTLY_CHANGED", 1_000)
    every = max(1, rows // changed)
    settings = b.warehouse(rows)
    sql, params = ctas_logit_sql(b.card, b.pipe, target="segments", source=CHANGED_FEATURES)
    b.reset(settings)
    b.score(settings)  # everyone scored once
    runs, same = [], []
    for _ in range(repeats):
        change_customers(settings, every)
        same.append(time_nightly_in_engine(settings, sql, params))
        change_customers(settings, every)
        run, _, _ = b.score(settings)
        assert run["rows_scored"] == rows // every, run
        runs.append(run["seconds"]["total"] - run["seconds"]["publish"])
    ours, work = statistics.median(runs), statistics.median(same)
    print(
        f"scoring nightly: {rows // every:,} changed of {rows:,} scored customers: mallscore score {ours:.2f}s "
        f"(phases of the last run {run['seconds']}) vs the same work in the engine (choose the changed customers, "
        f"archive and delete their segments, insert the new ones, one transaction): duckdb_nightly_in_engine "
        f"{work:.2f}s: ratio {ours / work:.2f} (no target; the issue's targets are the runs above)"
    )
    return {"rows": rows, "changed": rows // every, "run_s": ours, "same_work_s": work, "ratio": ours / work}


def bench_notebook(b: Bench, repeats: int) -> dict:
    rows = _env_int("BENCH_NOTEBOOK_ROWS", 100_000)
    settings = b.warehouse(rows)
    from mallscore.scoring import score_customers

    # both sides in this process with their libraries already imported, as in a notebook session
    b.reset(settings)
    score_customers(settings)  # warm-up: imports onnxruntime and pyarrow
    runs, totals, notebook = [], [], []
    for _ in range(repeats):
        b.reset(settings)
        seconds = score_customers(settings)["seconds"]
        runs.append(seconds["total"] - seconds["publish"])
        totals.append(seconds["total"])
        b.reset(settings)
        notebook.append(time_notebook(settings, b.pipe))
    o, t, n = statistics.median(runs), statistics.median(totals), statistics.median(notebook)
    print(
        f"notebook: {rows:,} customers, both in this process with their libraries imported: score_customers "
        f"{o:.3f}s (open, validate, score, write segments + history + run log, durable commit folded into the "
        f"file, close; {t:.3f}s with the analyst snapshot copy) vs notebook_pandas (read_sql + predict_proba + "
        f"to_sql, commit, close) {n:.2f}s: {n / o:.0f}x faster ({n / t:.0f}x with the snapshot; target >= 50x)"
    )
    return {
        "rows": rows,
        "ours_s": o,
        "ours_with_publish_s": t,
        "notebook_s": n,
        "speedup": n / o,
        "speedup_with_publish": n / t,
    }


def bench_memory(b: Bench, repeats: int) -> dict:
    small_rows = _env_int("BENCH_MEMORY_SMALL_ROWS", 1_000_000)
    large_rows = _env_int("BENCH_MEMORY_LARGE_ROWS", 10_000_000)
    peaks = {}
    for rows in (small_rows, large_rows):
        settings = b.warehouse(rows)
        values = []
        for _ in range(repeats):
            b.reset(settings)
            values.append(b.score(settings)[2])
        peaks[rows] = statistics.median(values)
    growth = peaks[large_rows] / peaks[small_rows]
    print(
        f"memory: peak RSS of mallscore score: {small_rows:,} customers {peaks[small_rows] / 2**20:.0f} MiB, "
        f"{large_rows:,} customers {peaks[large_rows] / 2**20:.0f} MiB: growth {growth:.2f}x (target <= 1.2x)"
    )
    return {
        "small_rows": small_rows,
        "large_rows": large_rows,
        "small_mib": peaks[small_rows] / 2**20,
        "large_mib": peaks[large_rows] / 2**20,
        "growth": growth,
    }


def bench_rescore(b: Bench, repeats: int) -> dict:
    rows = _env_int("BENCH_SCORE_ROWS", 10_000_000)
    settings = b.warehouse(rows)
    if not settings.snapshot.exists():
        b.reset(settings)
        b.score(settings)
    customer = rows // 2
    ours, sklearn = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "mallscore", "rescore", str(customer)],
            cwd=REPO,
            env=b.env(settings),
            capture_output=True,
            text=True,
        )
        ours.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"mallscore rescore failed: {done.stderr.strip()}")
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import sklearn"], check=True)
        sklearn.append(time.perf_counter() - started)
    o, s = statistics.median(ours), statistics.median(sklearn)
    print(
        f"rescore: `mallscore rescore {customer}` on {rows:,} customers, whole process {o:.3f}s vs "
        f"python -c 'import sklearn' {s:.3f}s: ratio {o / s:.2f} (target < 1)"
    )
    return {"rows": rows, "rescore_s": o, "import_sklearn_s": s, "ratio": o / s}


def main() -> None:
    repeats = _env_int("BENCH_REPEATS", 3)
    out_dir = REPO / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix="scoring-") as tmp:
        b = Bench(Path(tmp))
        parts = os.environ.get("BENCH_SCORING_PARTS", "scoring,all,nightly,notebook,memory,rescore").split(",")
        if "scoring" in parts:
            results["scoring"] = bench_scoring(b, repeats)
        if "all" in parts:
            results["scoring_all"] = bench_scoring_all(b, repeats)
        if "nightly" in parts:
            results["scoring_nightly"] = bench_nightly(b, repeats)
        if "notebook" in parts:
            results["notebook"] = bench_notebook(b, repeats)
        if "memory" in parts:
            results["memory"] = bench_memory(b, repeats)
        if "rescore" in parts:
            results["rescore"] = bench_rescore(b, _env_int("BENCH_RESCORE_REPEATS", 7))
    (out_dir / "scoring.json").write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
