"""The nightly scoring run: customers in, one segment each out, in one transaction.

A run verifies the model (:mod:`mallscore.scoring.model`), prepares the run's
relations from the card (:mod:`mallscore.scoring.relations`), commits a
``running`` row, then in one transaction scores the candidates (streamed
through onnxruntime, :mod:`mallscore.scoring.stream`, or in DuckDB with the
model compiled to SQL), inserts the rejected rows, moves the segments they
replace to the archive (``score --all``: every segment, first), and finishes
the run's row (the change feed,
``segment_changes``, is a view of what the run wrote: no second copy).
Every statement that writes is a file of ``sql/scoring/``. A killed run stays
``running`` and the next run marks it ``abandoned``. After the commit, the
analyst snapshot is published (:mod:`mallscore.snapshot`). scikit-learn and
skl2onnx are never imported here.
"""

from __future__ import annotations

import secrets
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from mallscore.contract import BASES, feature_column
from mallscore.errors import EXIT_SIGINT, EXIT_SIGTERM, InterruptedRun, UsageError
from mallscore.groups.assign import groups_scored_sql, load_groups
from mallscore.labels import cover, type_name
from mallscore.monitoring import BinCounts, count_features, run_drift, write_drift
from mallscore.scoring.memory import raise_memory_for_replacing, replace_ranges, restore_memory, return_freed_memory
from mallscore.scoring.model import MODEL_SOURCE, LoadedModel, load_model
from mallscore.scoring.relations import MODES, catalog, prepare, run_statement
from mallscore.scoring.runs import RUN_COLUMNS
from mallscore.scoring.stream import BATCH_ROWS, Progress, Spill, insert_spilled, stream_and_insert
from mallscore.settings import Settings

# columns added to existing warehouses by a later version of sql/: a run rebuilds when one is missing
_LATE_COLUMNS = (
    ("scoring_runs", "engine"),
    ("segment_archive", "archived_by_run"),
    ("segments", "behaviour_model_version"),
    ("segments", "top_reason"),
    ("segment_archive", "top_reason"),
    ("segment_changes", "top_reason"),
)


# --- signals -------------------------------------------------------------------------


class _Stop(BaseException):
    """Raised by the signal handler to unwind a run."""


@contextmanager
def _signals_stop_the_run() -> Iterator[dict]:
    """SIGTERM and SIGINT unwind the run once; later signals are ignored until it has cleaned up."""
    state: dict = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum: int, frame: object) -> None:
        if state["signal"] is None:
            state["signal"] = signum
            raise _Stop(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield state
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# --- the run ---------------------------------------------------------------------------


@dataclass
class _Timer:
    seconds: dict = field(
        default_factory=lambda: {
            "read_validate": 0.0,
            "score": 0.0,
            "write": 0.0,
            "monitor": 0.0,
            "publish": 0.0,
            "total": 0.0,
        }
    )

    def add(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[phase] += now - since
        return now


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id such as ``R20261127T020000Z-1a2b3c``."""
    now = now or datetime.now(UTC)
    return f"R{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _start_run(con: duckdb.DuckDBPyConnection, params: dict) -> None:
    """Mark stale runs abandoned and commit this run's ``running`` row."""
    con.begin()
    try:
        run_statement(con, "abandon_running", {"now": params["started_at"]})
        run_statement(con, "start_run", params)
        con.commit()
    except BaseException:
        try:
            con.rollback()
        except duckdb.Error:
            pass  # a failed commit (a full disk) already ended the transaction; the first error is the one to see
        raise


def _end_failed_run(con: duckdb.DuckDBPyConnection, run_id: str, status: str, error: str) -> None:
    run_statement(con, "fail_run", {"status": status, "now": _utcnow(), "error": error[:2000], "run_id": run_id})


def _run_row(con: duckdb.DuckDBPyConnection, run_id: str) -> dict:
    rows = con.execute(f"select {', '.join(RUN_COLUMNS)} from scoring_runs where run_id = ?", [run_id]).fetchall()
    return dict(zip(RUN_COLUMNS, rows[0])) if rows else {}


# DuckDB settings of the job's connection (measured on 2 shared cores; see bench/bench_scoring.py):
# * memory_limit (Settings.memory_limit, MALLSCORE_MEMORY_LIMIT, default 64MB): DuckDB caches every
#   block it reads or writes up to 80% of RAM, so a run's peak grew ~10 MiB per million customers
#   (10M: 1.44x-1.53x the 1M peak) and a nightly rerun that joins 10M current segments peaked at
#   660 MiB. 64MB keeps the 10M peak within 1.2x of the 1M peak; a join bigger than the limit
#   spills to the warehouse's .tmp folder instead of growing.
# * preserve_insertion_order = false: with it on, the streamed INSERT keeps its row groups in
#   source order, and under a 64MB cap that order-preserving insert ran at half speed (plain
#   DuckDB, 10M rows: 3.5 s instead of 1.8 s; the run 1.3x-1.5x the CTAS baseline). Off, the
#   insert costs the same as uncapped. Nothing relies on segments' physical order (readers
#   ORDER BY, aggregate or look up by customer_id). It also lets two threads pull the Arrow
#   stream at once, each holding a batch in flight: hence small batches (with 1Mi rows the 10M
#   peak grew to 1.36x the 1M peak; 256Ki: 1.12x). BATCH_ROWS is 64Ki: DuckDB's Arrow export grows
#   each batch's buffers by realloc, so big batches fault in fresh pages all along. 10M new
#   customers (alternating processes): 256Ki 3.01-3.20 s, 218K page faults; 128Ki 2.77-2.94 s;
#   64Ki 2.72-2.80 s, 155K; 32Ki and 16Ki 2.82-2.89 s.
# * checkpoint_threshold: a run's commit larger than this is checkpointed straight into the
#   file instead of being written to the WAL first and copied again by the snapshot's checkpoint
#   (100,000 customers: about 50 ms less per run). The running row stays a small WAL commit.
# * block_allocator_memory: DuckDB keeps this much memory for its blocks once touched instead of
#   returning it and faulting fresh pages in again. 10M new customers: 400K minor page faults per run
#   without it, 220K with 64MB (256MB and 512MB: no fewer); the run 3.05-3.09 s instead of 3.47 s
#   (alternating processes, in-process timers), peak RSS 5 MiB higher.
JOB_SETTINGS: dict[str, Any] = {
    "enable_progress_bar": False,
    "preserve_insertion_order": False,
    "checkpoint_threshold": "1MB",
    "block_allocator_memory": "64MB",
}


def open_job_connection(settings: Settings) -> duckdb.DuckDBPyConnection:
    """The job's read-write warehouse connection: waits for the lock, no file access, tuned by JOB_SETTINGS."""
    from mallscore.warehouse import connect

    con = connect(settings.warehouse, lock_timeout=settings.lock_timeout)
    tuning = dict(JOB_SETTINGS)
    if settings.memory_limit.lower() != "default":
        tuning["memory_limit"] = settings.memory_limit
    tune(con, tuning)
    return con


def tune(con: duckdb.DuckDBPyConnection, tuning: dict[str, Any]) -> None:
    """``set`` each of ``tuning``'s DuckDB settings on ``con`` (strings quoted, booleans as true/false)."""
    for name, value in tuning.items():
        con.execute(f"set {name} = {value!r}" if isinstance(value, str) else f"set {name} = {str(value).lower()}")


def _ensure_schema(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """Build the warehouse's relations when one is missing or older than this code; return the catalog.

    Ingest and `mallscore features` rebuild them anyway; a scoring run only
    builds when a relation (or a column added later, :data:`_LATE_COLUMNS`) is
    missing, so the usual run costs one catalog query.
    """
    from mallscore.warehouse import build, sql_files

    found = catalog(con)
    stale = any(column not in found.get(table, {}) for table, column in _LATE_COLUMNS)
    if stale or any(f.relation not in found for f in sql_files()):
        build(con, check=False)
        found = catalog(con)
    return found


def score_customers(
    settings: Settings,
    mode: str = "nightly",
    model_version: str | None = None,
    progress: Progress | None = None,
    *,
    customer_ids: Sequence[int] | None = None,
    batch_rows: int = BATCH_ROWS,
    publish: bool = True,
    engine: str = "onnx",
) -> dict:
    """Run one scoring run of ``mode`` (nightly, all, adhoc) and publish the snapshot; return the run's row.

    ``engine`` onnx streams the rows through onnxruntime; sql scores inside
    DuckDB with the model compiled to SQL (same selection, contract,
    bookkeeping and transaction; ``seconds.score`` then includes the write).
    The returned dict holds the ``scoring_runs`` columns, ``seconds`` per phase
    and ``snapshot`` (the published path). Raises ConfigError (78) for a
    missing or tampered model before touching the warehouse, or (before any
    write) when the warehouse lacks a feature the card needs, LockedError (75)
    when the warehouse stays locked, InterruptedRun (130/143) on a signal.
    """
    if mode not in MODES:
        raise UsageError(f"unknown scoring mode {mode!r}; use nightly, all or adhoc")
    if mode == "adhoc" and not customer_ids:
        raise UsageError("an adhoc run needs customer ids")
    timer = _Timer()
    t0 = time.perf_counter()
    return_freed_memory()
    model = load_model(settings, model_version, engine)
    model.groups = load_groups(settings.models_dir, session=model.engine == "onnx")  # None: no groups champion
    con = open_job_connection(settings)
    reader_con = None
    spill = Spill()
    try:
        found = _ensure_schema(con)
        columns = found.get(model.contract.feature_table, {})
        ids = [int(i) for i in customer_ids or []]
        candidates = prepare(
            con, model.contract, mode=mode, model_version=model.version, columns=columns, ids=ids, groups=model.groups
        )
        if model.engine == "onnx":  # the stream reads through a cursor, which needs the relations too
            reader_con = con.cursor()
            reader_con.execute("set enable_progress_bar = false")
            prepare(
                reader_con,
                model.contract,
                mode=mode,
                model_version=model.version,
                columns=columns,
                ids=ids,
                candidates=candidates,
                groups=model.groups,
            )
        started = _utcnow()
        params = {
            "run_id": new_run_id(),
            "mode": mode,
            "started_at": started,
            "scored_at": started,
            "model_version": model.version,
            "model_sha256": model.sha256,
            "engine": model.engine,
            "threshold": model.contract.threshold,
            "groups_version": model.groups.version if model.groups is not None else None,
            "drift_warn": settings.drift_warn,
            "drift_alert": settings.drift_alert,
        }
        run_id = params["run_id"]
        with _signals_stop_the_run() as signals:
            try:
                _start_run(con, params)
            except _Stop:
                raise _interrupted(signals, "stopped before the run started; nothing written") from None
            previous_cap = raise_memory_for_replacing(con)
            try:
                _run_transaction(con, reader_con, model, params, spill, timer, progress, batch_rows)
            except BaseException as exc:
                _fail(con, run_id, exc, signals)
            finally:
                restore_memory(con, previous_cap)
            if reader_con is not None:
                reader_con.close()
                reader_con = None
            snapshot = _publish(con, settings, run_id, signals, timer) if publish else None
        row = _run_row(con, run_id)
        drift = run_drift(con, run_id)
    finally:
        spill.close()
        if reader_con is not None:
            reader_con.close()
        con.close()
    timer.seconds["total"] = time.perf_counter() - t0
    return {
        **row,
        "seconds": {k: round(v, 4) for k, v in timer.seconds.items()},
        "snapshot": str(snapshot) if snapshot else None,
        "drift": drift,
    }


def _cover_labels(con: duckdb.DuckDBPyConnection, model: LoadedModel, params: dict) -> LoadedModel:
    """Make the label columns' ENUMs hold every label this run can write (mallscore.labels); the model then
    gives its reasons in top_reason's ENUM."""
    groups = model.groups
    cover(con, "segment", [t.name for t in model.contract.tiers])
    cover(con, "basis", BASES)
    cover(con, "model_version", [model.version])
    cover(con, "top_reason", model.reason_labels)
    cover(con, "behaviour_group", groups.contract.names if groups is not None else ())
    cover(con, "behaviour_model_version", [params["groups_version"]])
    return model.with_label_type(type_name(con, "top_reason"))


def _run_transaction(
    con: duckdb.DuckDBPyConnection,
    reader_con: duckdb.DuckDBPyConnection | None,
    model: LoadedModel,
    params: dict,
    spill: Spill,
    timer: _Timer,
    progress: Progress | None,
    batch_rows: int,
) -> None:
    """Archive, score, insert, reject and finish the run's row: one transaction (the change feed follows)."""
    con.begin()
    t = time.perf_counter()
    model = _cover_labels(con, model, params)
    older = _archive_all(con, params) if params["mode"] == "all" else _count_segments(con)
    t = timer.add("write", t)
    counts = None
    if model.engine == "sql":
        count_features(con, model.reference, [feature_column(i) for i in range(len(model.contract.features))])
        timer.add("monitor", t)
        scored, rejected = _score_in_engine(con, model, params, timer, progress)
    else:
        counts = BinCounts(model.reference) if model.reference is not None else None
        scored = _stream(con, reader_con, model, params, spill, timer, progress, batch_rows, counts)
        t = time.perf_counter()
        insert_spilled(con, spill, params)
        rejected = spill.rows
        timer.add("write", t)
    t = time.perf_counter()
    _archive_replaced(con, params, older, scored + rejected)
    t = timer.add("write", t)
    write_drift(
        con,
        model.reference,
        model.contract,
        {**params, "rows": scored},
        params["drift_warn"],
        params["drift_alert"],
        counts,
    )
    t = timer.add("monitor", t)
    run_statement(
        con,
        "finish_run",
        {**params, "now": _utcnow(), "rows_read": scored + rejected, "rows_scored": scored, "rows_rejected": rejected},
    )
    con.commit()
    timer.add("write", t)


def _count_segments(con: duckdb.DuckDBPyConnection) -> int:
    """How many segments the run found (all older than its own rows, which it writes after this)."""
    return int(con.execute("select count(*) from segments").fetchall()[0][0])


def _archive_all(con: duckdb.DuckDBPyConnection, params: dict) -> int:
    """``score --all`` rebuilds segments: every current segment is archived in one copy without a join
    (sql/scoring/archive_all.sql; the join with the candidates was a third of the run's time at 10M
    customers) and removed at once, before the run writes its rows. Returns 0: no older segment is left."""
    run_statement(con, "archive_all", params)
    run_statement(con, "delete_all_replaced", params)
    return 0


def _archive_replaced(con: duckdb.DuckDBPyConnection, params: dict, older: int, written: int) -> None:
    """After the run wrote its rows, move the older segments of the customers it wrote to the archive.

    The customers it wrote are its own rows of ``segments`` and ``rejected_rows``, so a night with few
    changes joins a small table with segments instead of reading the candidates again (1,000 changed
    customers out of 10M scored: the archive and delete took 1.1 s through the candidates). ``older`` is
    the number of segments before the run (none: nothing to archive); ``written`` the rows the run wrote,
    which size the ranges (sql/scoring/archive_replaced.sql). When the archive took every older segment
    (a new model) they are removed at once, else range by range, as archived.
    """
    if not older or not written:
        return
    ranges = replace_ranges(con, written)
    archived = sum(
        int(run_statement(con, "archive_replaced", {**params, "lo": lo, "hi": hi}).fetchall()[0][0])
        for lo, hi in ranges
    )
    if not archived:  # only customers never scored before
        return
    if archived == older:
        run_statement(con, "delete_all_replaced", params)
        return
    for lo, hi in ranges:
        run_statement(con, "delete_replaced", {**params, "lo": lo, "hi": hi})


def _stream(con, reader_con, model, params, spill, timer, progress, batch_rows, counts=None) -> int:
    """The onnxruntime pass; time spent inside DuckDB's INSERT (not in our batches) counts as write."""
    phases = ("read_validate", "score", "write", "monitor")
    before = sum(timer.seconds[k] for k in phases)
    started = time.perf_counter()
    observe = counts.add if counts is not None else None
    scored = stream_and_insert(con, reader_con, model, params, spill, timer.add, progress, batch_rows, observe)
    inner = sum(timer.seconds[k] for k in phases) - before
    timer.seconds["write"] += max(time.perf_counter() - started - inner, 0.0)
    return scored


def _score_in_engine(
    con: duckdb.DuckDBPyConnection, model: LoadedModel, params: dict, timer: _Timer, progress: Progress | None
) -> tuple[int, int]:
    """``--engine sql``: reject, score and insert inside DuckDB with the job's statements; return (scored, rejected).

    ``run_rejected`` and ``run_scored`` become views over the same candidates
    (the model's compiled CTEs read the valid ones), so the rows go through
    the same INSERT statements as the onnxruntime path, in the run's transaction.
    """
    model_ctes, relation = model.sql
    con.execute(f"create or replace temp view {MODEL_SOURCE} as select * from run_candidates where reason is null")
    con.execute(
        "create or replace temp view run_rejected as "
        "select customer_id, raw_values, reason from run_candidates where reason is not null"
    )
    features = [feature_column(i) for i in range(len(model.contract.features))]
    con.execute(
        f"create or replace temp view run_scored as {groups_scored_sql(model.groups, model_ctes, relation, features)}"
    )
    con.execute(model.reasons_sql)  # run_reasoned: the same top_reason view as the onnxruntime path
    started = time.perf_counter()
    rejected = int(run_statement(con, "insert_rejected", params).fetchall()[0][0])
    started = timer.add("read_validate", started)
    scored = int(run_statement(con, "insert_segments", params).fetchall()[0][0])
    timer.add("score", started)
    if progress is not None:
        progress(scored + rejected, scored + rejected)
    return scored, rejected


def _publish(con: duckdb.DuckDBPyConnection, settings: Settings, run_id: str, signals: dict, timer: _Timer) -> Path:
    """Publish the analyst snapshot after the commit; a signal here leaves the old snapshot in place."""
    from mallscore.snapshot import publish_snapshot

    t = time.perf_counter()
    try:
        path = publish_snapshot(con, settings)
    except BaseException:
        if signals["signal"] is None:
            raise
        raise _interrupted(
            signals,
            f"run {run_id} was committed, but the analyst snapshot was not published (the next run publishes it)",
        ) from None
    timer.add("publish", t)
    return path


def _interrupted(signals: dict, message: str) -> InterruptedRun:
    code = EXIT_SIGINT if signals["signal"] == signal.SIGINT else EXIT_SIGTERM
    return InterruptedRun(message, code)


def _fail(con: duckdb.DuckDBPyConnection, run_id: str, exc: BaseException, signals: dict) -> None:
    """Roll the run back, record why, and raise the error the CLI maps to an exit code."""
    try:
        con.rollback()
    except duckdb.Error:
        pass  # no transaction left to roll back
    if signals["signal"] is not None or isinstance(exc, (_Stop, KeyboardInterrupt)):
        if signals["signal"] is None:
            signals["signal"] = signal.SIGINT
        name = "SIGINT" if signals["signal"] == signal.SIGINT else "SIGTERM"
        _end_failed_run(con, run_id, "aborted", f"stopped by {name}; rolled back")
        raise _interrupted(signals, f"run {run_id} stopped by {name}: rolled back, nothing written") from None
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    try:
        _end_failed_run(con, run_id, "failed", f"{type(exc).__name__}: {message}")
    except duckdb.Error:
        pass  # e.g. a full disk: the row stays 'running' and the next run marks it abandoned
    raise exc
