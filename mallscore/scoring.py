"""The nightly scoring job: customers in, one segment each out, in one transaction.

A run selects the customers that need scoring (see
:func:`mallscore.contract.candidates_sql`), streams them out of DuckDB as Arrow
record batches, rejects rows that break the model card's contract, scores the
rest with onnxruntime on float32, and streams the probabilities straight back
into ``segments`` through one ``INSERT`` that reads an Arrow stream: one pass
over the data, no copy of it in Python, memory bounded by the batch size.

Superseded assignments move to ``segment_archive`` (``segment_history`` shows
both), rejected rows go to ``rejected_rows``, and the run's row in
``scoring_runs`` is finished: all in the same transaction. A ``running`` row is
committed first so that a killed run is visible and the next run marks it
``abandoned``. After the commit, the analyst snapshot is published
(:mod:`mallscore.snapshot`). scikit-learn and skl2onnx are never imported here.
"""

from __future__ import annotations

import hashlib
import secrets
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from mallscore.contract import (
    Contract,
    basis_sql,
    bound,
    candidates_sql,
    check_columns,
    contract_from_card,
    contract_params,
    describe_ids,
    feature_column,
    quote,
    scoring_input_ctes,
    scoring_input_sql,
    segment_insert_sql,
    segment_sql,
)
from mallscore.errors import (
    EXIT_SIGINT,
    EXIT_SIGTERM,
    BadInputError,
    ConfigError,
    InterruptedRun,
    UsageError,
)
from mallscore.settings import Settings

BATCH_ROWS = 1 << 18  # see JOB_SETTINGS: two threads may each hold a batch
ENGINES = ("onnx", "sql")
RUN_COLUMNS = (
    "run_id",
    "mode",
    "started_at",
    "finished_at",
    "status",
    "model_version",
    "model_sha256",
    "rows_read",
    "rows_scored",
    "rows_rejected",
    "error",
    "engine",
)
_MODEL_SOURCE = "model_source"
Progress = Callable[[int, int], None]


# --- the model -----------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A verified model: its card, the contract it implies, and how it scores.

    ``engine`` onnx: ``session`` is an onnxruntime session. ``engine`` sql:
    ``sql`` is (CTEs, relation) compiled from the ONNX graph by
    :func:`mallscore.sqlexport.compile_model_ctes`, reading the contract's
    valid rows from ``model_source``; onnxruntime is never loaded.
    """

    card: dict
    contract: Contract
    sha256: str
    session: Any
    engine: str = "onnx"
    sql: tuple[str, str] | None = None

    @property
    def version(self) -> str:
        """The model version (the card's)."""
        return self.contract.version


def _verified_model(settings: Settings, version: str | None) -> tuple[dict, bytes]:
    """The champion's (or ``version``'s) card and ONNX bytes, both sha256-checked before anything loads."""
    from mallscore import registry

    path = (
        registry.champion_card_path(settings.models_dir)
        if version is None
        else registry.card_path(settings.models_dir, version)
    )
    return registry.verify_model(path)


def load_model(settings: Settings, version: str | None = None, engine: str = "onnx") -> LoadedModel:
    """Verify the model's checksum, check its card, then open an onnxruntime session on it (or compile it to SQL)."""
    if engine not in ENGINES:
        raise UsageError(f"unknown scoring engine {engine!r}; use {' or '.join(ENGINES)}")
    card, data = _verified_model(settings, version)
    contract = contract_from_card(card)
    if engine == "sql":
        from mallscore.sqlexport import compile_model_ctes

        columns = {name: feature_column(i) for i, name in enumerate(contract.inputs)}
        sql = compile_model_ctes(card, data, _MODEL_SOURCE, columns)
        return LoadedModel(card, contract, hashlib.sha256(data).hexdigest(), None, engine="sql", sql=sql)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ConfigError(
            f"model {contract.version}: onnxruntime cannot load it ({str(exc).splitlines()[0]})"
        ) from None
    inputs = {i.name: i for i in session.get_inputs()}
    for name in contract.inputs:
        if name not in inputs:
            raise ConfigError(f"model {contract.version}: the ONNX graph has no input {name!r} that its card lists")
        if inputs[name].type != "tensor(float)":
            raise ConfigError(
                f"model {contract.version}: ONNX input {name!r} is {inputs[name].type}, expected tensor(float)"
            )
    if set(inputs) - set(contract.inputs):
        raise ConfigError(
            f"model {contract.version}: the ONNX graph has inputs the card does not list: {sorted(set(inputs) - set(contract.inputs))}"
        )
    if contract.probability_output not in {o.name for o in session.get_outputs()}:
        raise ConfigError(f"model {contract.version}: the ONNX graph has no output {contract.probability_output!r}")
    return LoadedModel(card, contract, hashlib.sha256(data).hexdigest(), session)


def predict(model: LoadedModel, feeds: dict[str, Any]) -> Any:
    """P(high spender) as float32 for finite float32 ``[n, 1]`` feeds, one per feature."""
    import numpy as np

    for name, values in feeds.items():
        if not np.isfinite(values).all():  # the SQL contract already rejected these; never feed them
            raise RuntimeError(f"internal error: a non-finite {name} reached the scorer")
    out = model.session.run([model.contract.probability_output], feeds)[0]
    return np.ascontiguousarray(out[:, 1])


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
        default_factory=lambda: {"read_validate": 0.0, "score": 0.0, "write": 0.0, "publish": 0.0, "total": 0.0}
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


def feature_columns(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    """``{column: type}`` of a relation in the warehouse's main schema (empty if it does not exist)."""
    rows = con.execute(
        "select column_name, data_type from duckdb_columns() "
        "where database_name = current_database() and schema_name = 'main' and table_name = ? order by column_index",
        [relation],
    ).fetchall()
    return {name: dtype for name, dtype in rows}


def _start_run(con: duckdb.DuckDBPyConnection, run_id: str, mode: str, model: LoadedModel, started: datetime) -> None:
    con.begin()
    try:
        con.execute(
            "update scoring_runs set status = 'abandoned', finished_at = $now, "
            "error = 'the process ended before the run finished (killed?); nothing it wrote was kept' "
            "where status = 'running'",
            {"now": started},
        )
        con.execute(
            "insert into scoring_runs (run_id, mode, started_at, status, model_version, model_sha256, engine) "
            "values ($run_id, $mode, $started, 'running', $version, $sha, $engine)",
            {
                "run_id": run_id,
                "mode": mode,
                "started": started,
                "version": model.version,
                "sha": model.sha256,
                "engine": model.engine,
            },
        )
        con.commit()
    except BaseException:
        try:
            con.rollback()
        except duckdb.Error:
            pass  # a failed commit (a full disk) already ended the transaction; the first error is the one to see
        raise


def _end_failed_run(con: duckdb.DuckDBPyConnection, run_id: str, status: str, error: str) -> None:
    con.execute(
        "update scoring_runs set status = $status, finished_at = $now, error = $error where run_id = $run_id",
        {"status": status, "now": _utcnow(), "error": error[:2000], "run_id": run_id},
    )


def _selection_shape(
    con: duckdb.DuckDBPyConnection, contract: Contract, version: str, catalog: dict[str, dict[str, str]] | None = None
) -> dict:
    """What the candidate query must join: a spending score column, current segments, earlier rejections."""
    columns = (
        catalog.get(contract.feature_table, {}) if catalog is not None else feature_columns(con, contract.feature_table)
    )
    has_score = check_columns(contract, columns)
    scored, rejected = con.execute(
        "select exists (select 1 from segments), exists (select 1 from rejected_rows inner join scoring_runs "
        "using (run_id) where scoring_runs.model_version = ? and scoring_runs.status = 'succeeded')",
        [version],
    ).fetchall()[0]
    return {"has_score": has_score, "scored": bool(scored), "rejected": bool(rejected)}


def _archive_replaced(con: duckdb.DuckDBPyConnection, contract: Contract, mode: str, shape: dict, params: dict) -> None:
    """Move the current segments of this run's candidates to ``segment_archive``."""
    if not shape["scored"]:
        return
    ctes = candidates_sql(contract, mode=mode, **shape)
    archive = ctes + "select segments.* from segments semi join candidates using (customer_id)"
    con.execute("insert into segment_archive " + archive, bound(archive, params))
    delete = f"delete from segments where customer_id in ({ctes} select customer_id from candidates)"
    con.execute(delete, bound(delete, params))


class _Spill:
    """Rejected rows written to a temporary Arrow IPC file, so memory stays flat however many there are."""

    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory | None = None
        self._writer: Any = None
        self.rows = 0
        self.path: Path | None = None

    def write(self, batch: Any) -> None:
        import pyarrow.ipc as ipc

        if self._writer is None:
            self._dir = tempfile.TemporaryDirectory(prefix="mallscore-rejected-")
            self.path = Path(self._dir.name) / "rejected.arrows"
            self._writer = ipc.new_stream(str(self.path), batch.schema)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def reader(self) -> Any:
        import pyarrow.ipc as ipc

        self._writer.close()
        self._writer = None
        return ipc.open_stream(str(self.path))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._dir is not None:
            self._dir.cleanup()


def _stream_and_insert(
    con: duckdb.DuckDBPyConnection,
    model: LoadedModel,
    run_id: str,
    mode: str,
    shape: dict,
    params: dict,
    spill: _Spill,
    timer: _Timer,
    progress: Progress | None,
    batch_rows: int,
) -> int:
    """Stream candidates out, score them, and insert them into ``segments`` in one statement; return rows scored."""
    import pyarrow as pa

    contract = model.contract
    query = scoring_input_sql(contract, mode=mode, **shape)
    reader_con = con.cursor()
    try:
        reader_con.execute("set enable_progress_bar = false")
        total = 0
        if progress is not None:
            count = candidates_sql(contract, mode=mode, **shape) + "select count(*) from candidates"
            total = int(reader_con.execute(count, bound(count, params)).fetchall()[0][0])
            progress(0, total)
        reader = reader_con.sql(query, params=bound(query, params)).to_arrow_reader(batch_rows)
        inputs = {name: feature_column(i) for i, name in enumerate(contract.inputs)}
        out_schema = pa.schema(
            [
                reader.schema.field("customer_id"),
                reader.schema.field("updated_at"),
                reader.schema.field("observed_score"),
                pa.field("p", pa.float32()),
            ]
        )
        state = {"scored": 0, "seen": 0, "error": None}

        def scored_batches() -> Iterator[Any]:
            try:
                batches = iter(reader)
                while True:
                    started = time.perf_counter()
                    batch = next(batches, None)
                    started = timer.add("read_validate", started)
                    if batch is None:
                        return
                    state["seen"] += batch.num_rows
                    reason = batch.column("reason")
                    if reason.null_count != batch.num_rows:
                        import pyarrow.compute as pc  # ~40 ms to import: only when a batch has rejected rows

                        spill.write(batch.filter(pc.is_valid(reason)).select(["customer_id", "raw_values", "reason"]))
                        batch = batch.filter(pc.is_null(reason))
                    started = timer.add("write", started)
                    if batch.num_rows:
                        feeds = {n: _as_numpy(batch.column(c)).reshape(-1, 1) for n, c in inputs.items()}
                        p = predict(model, feeds)
                        started = timer.add("score", started)
                        state["scored"] += batch.num_rows
                        yield pa.RecordBatch.from_arrays(
                            [
                                batch.column("customer_id"),
                                batch.column("updated_at"),
                                batch.column("observed_score"),
                                _as_arrow(p),
                            ],
                            schema=out_schema,
                        )
                    if progress is not None:
                        progress(state["seen"], total)
            except BaseException as exc:  # surfaced after DuckDB wraps it
                state["error"] = exc
                raise

        source = f"scored_{run_id.replace('-', '_')}"
        con.register(source, pa.RecordBatchReader.from_batches(out_schema, scored_batches()))
        insert = segment_insert_sql(contract, source)
        before = sum(timer.seconds[k] for k in ("read_validate", "score", "write"))
        started = time.perf_counter()
        try:
            con.execute(insert, bound(insert, params))
        except duckdb.Error:
            if state["error"] is not None:
                raise state["error"] from None
            raise
        finally:
            _unregister(con, source)
        inner = sum(timer.seconds[k] for k in ("read_validate", "score", "write")) - before
        timer.seconds["write"] += max(time.perf_counter() - started - inner, 0.0)
        return state["scored"]
    finally:
        reader_con.close()


def _score_in_engine(
    con: duckdb.DuckDBPyConnection,
    model: LoadedModel,
    mode: str,
    shape: dict,
    params: dict,
    timer: _Timer,
    progress: Progress | None,
) -> tuple[int, int]:
    """``--engine sql``: reject, score and insert with two statements inside DuckDB; return (scored, rejected).

    The same candidate and contract CTEs as the streamed query feed both: the
    rejected rows go to ``rejected_rows``, the valid ones through the model's
    compiled SQL into ``segments`` (the same INSERT as the onnxruntime path).
    Both run in the run's transaction, so they see the same candidates.
    """
    contract = model.contract
    ctes = scoring_input_ctes(contract, mode=mode, **shape)
    started = time.perf_counter()
    reject = (
        "insert into rejected_rows (load_id, run_id, line_no, customer_id, raw_values, reason, rejected_at) "
        + ctes
        + "\nselect null, $run_id, null, cast(customer_id as varchar), raw_values, reason, $scored_at "
        "from final where reason is not null"
    )
    rejected = int(con.execute(reject, bound(reject, params)).fetchall()[0][0])
    started = timer.add("read_validate", started)
    model_ctes, relation = model.sql
    source = f"{ctes},\n\n{_MODEL_SOURCE} as (\n    select * from final where reason is null\n),\n\n{model_ctes}"
    insert = segment_insert_sql(contract, relation, source, p="p_high_spender")
    scored = int(con.execute(insert, bound(insert, params)).fetchall()[0][0])
    timer.add("score", started)
    if progress is not None:
        progress(scored + rejected, scored + rejected)
    return scored, rejected


def _as_numpy(array: Any) -> Any:
    """A float32 Arrow array without nulls as a zero-copy numpy view (``to_numpy`` would import pandas)."""
    import numpy as np

    if array.null_count or str(array.type) != "float":
        raise RuntimeError(
            f"internal error: expected float32 without nulls, got {array.type} with {array.null_count} null(s)"
        )
    return np.frombuffer(array.buffers()[1], dtype=np.float32, count=len(array), offset=array.offset * 4)


def _as_arrow(values: Any) -> Any:
    """A contiguous float32 numpy array as an Arrow array, zero-copy (``pa.array`` would import pandas)."""
    import pyarrow as pa

    return pa.Array.from_buffers(pa.float32(), len(values), [None, pa.py_buffer(values)])


def _unregister(con: duckdb.DuckDBPyConnection, name: str) -> None:
    try:
        con.unregister(name)
    except duckdb.Error:
        pass  # the transaction failed; the rollback that follows drops nothing we need


def _insert_rejected(con: duckdb.DuckDBPyConnection, spill: _Spill, run_id: str, now: datetime) -> None:
    if not spill.rows:
        return
    source = f"rejected_{run_id.replace('-', '_')}"
    con.register(source, spill.reader())
    try:
        con.execute(
            f"insert into rejected_rows (load_id, run_id, line_no, customer_id, raw_values, reason, rejected_at) "
            f"select null, $run_id, null, cast(customer_id as varchar), raw_values, reason, $now from {quote(source)}",
            {"run_id": run_id, "now": now},
        )
    finally:
        con.unregister(source)


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
#   stream at once, each holding a batch in flight: hence BATCH_ROWS of 256Ki rows, not 1Mi
#   (with 1Mi the 10M peak grew to 1.36x the 1M peak; 256Ki: 1.12x, run/CTAS 0.99).
# * checkpoint_threshold: a run's commit larger than this is checkpointed straight into the
#   file instead of being written to the WAL first and copied again by the snapshot's checkpoint
#   (100,000 customers: about 50 ms less per run). The running row stays a small WAL commit.
JOB_SETTINGS: dict[str, Any] = {
    "enable_progress_bar": False,
    "preserve_insertion_order": False,
    "checkpoint_threshold": "1MB",
}


def open_job_connection(settings: Settings) -> duckdb.DuckDBPyConnection:
    """The job's read-write warehouse connection: waits for the lock, no file access, tuned by JOB_SETTINGS."""
    from mallscore.warehouse import connect

    con = connect(settings.warehouse, lock_timeout=settings.lock_timeout)
    tuning = dict(JOB_SETTINGS)
    if settings.memory_limit.lower() != "default":
        tuning["memory_limit"] = settings.memory_limit
    for name, value in tuning.items():
        con.execute(f"set {name} = {value!r}" if isinstance(value, str) else f"set {name} = {str(value).lower()}")
    return con


def _return_freed_memory() -> None:
    """Serve big allocations with mmap so freed batch buffers go back to the system (glibc only).

    glibc raises its mmap threshold after large frees and then keeps freed batch
    buffers in a fragmenting heap; with a fixed 1 MiB threshold a 10-million-row
    run peaked about 40 MiB lower. Process-wide, and only the thresholds change.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return  # not glibc: nothing to tune
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 1 << 20)
    mallopt(m_trim_threshold, 1 << 20)


def _catalog(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """``{relation: {column: type}}`` of the warehouse's main schema, tables and views, in one query."""
    catalog: dict[str, dict[str, str]] = {}
    for table, column, dtype in con.execute(
        "select table_name, column_name, data_type from duckdb_columns() "
        "where database_name = current_database() and schema_name = 'main' order by table_name, column_index"
    ).fetchall():
        catalog.setdefault(table, {})[column] = dtype
    return catalog


def _ensure_schema(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """Build the warehouse's relations when one is missing or older than this code; return the catalog.

    Ingest and `mallscore features` rebuild them anyway; a scoring run only
    builds when a relation (or the ``scoring_runs.engine`` column) is missing,
    so the usual run costs one catalog query.
    """
    from mallscore.warehouse import build, sql_files

    catalog = _catalog(con)
    if any(f.relation not in catalog for f in sql_files()) or "engine" not in catalog.get("scoring_runs", {}):
        build(con, check=False)
        catalog = _catalog(con)
    return catalog


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
    if mode not in ("nightly", "all", "adhoc"):
        raise UsageError(f"unknown scoring mode {mode!r}; use nightly, all or adhoc")
    if mode == "adhoc" and not customer_ids:
        raise UsageError("an adhoc run needs customer ids")
    timer = _Timer()
    t0 = time.perf_counter()
    _return_freed_memory()
    model = load_model(settings, model_version, engine)
    contract = model.contract
    con = open_job_connection(settings)
    spill = _Spill()
    try:
        catalog = _ensure_schema(con)
        shape = _selection_shape(con, contract, model.version, catalog)
        run_id = new_run_id()
        started = _utcnow()
        params = {
            **contract_params(contract),
            "model_version": model.version,
            "run_id": run_id,
            "scored_at": started,
            "ids": [int(i) for i in customer_ids or []],
        }
        with _signals_stop_the_run() as signals:
            try:
                _start_run(con, run_id, mode, model, started)
            except _Stop:
                raise _interrupted(signals, "stopped before the run started; nothing written") from None
            try:
                _run_transaction(con, model, run_id, mode, shape, params, spill, timer, progress, batch_rows)
            except BaseException as exc:
                _fail(con, run_id, exc, signals)
            snapshot = _publish(con, settings, run_id, signals, timer) if publish else None
        row = _run_row(con, run_id)
    finally:
        spill.close()
        con.close()
    timer.seconds["total"] = time.perf_counter() - t0
    return {
        **row,
        "seconds": {k: round(v, 4) for k, v in timer.seconds.items()},
        "snapshot": str(snapshot) if snapshot else None,
    }


def _run_transaction(
    con: duckdb.DuckDBPyConnection,
    model: LoadedModel,
    run_id: str,
    mode: str,
    shape: dict,
    params: dict,
    spill: _Spill,
    timer: _Timer,
    progress: Progress | None,
    batch_rows: int,
) -> None:
    """Archive, score, insert, reject and finish the run's row: one transaction, committed at the end."""
    con.begin()
    t = time.perf_counter()
    _archive_replaced(con, model.contract, mode, shape, params)
    timer.add("write", t)
    if model.engine == "sql":
        scored, rejected = _score_in_engine(con, model, mode, shape, params, timer, progress)
        t = time.perf_counter()
    else:
        scored = _stream_and_insert(con, model, run_id, mode, shape, params, spill, timer, progress, batch_rows)
        t = time.perf_counter()
        _insert_rejected(con, spill, run_id, params["scored_at"])
        rejected = spill.rows
    con.execute(
        "update scoring_runs set status = 'succeeded', finished_at = $now, rows_read = $read, "
        "rows_scored = $scored, rows_rejected = $rejected where run_id = $run_id",
        {"now": _utcnow(), "read": scored + rejected, "scored": scored, "rejected": rejected, "run_id": run_id},
    )
    con.commit()
    timer.add("write", t)


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


# --- ad-hoc rescoring ------------------------------------------------------------------------


def rescore_customers(settings: Settings, customer_ids: Sequence[int], *, write: bool = False) -> dict:
    """Score the given customers now; with ``write`` update ``segments`` as an ``adhoc`` run.

    Returns ``{"model_version", "run_id", "customers": [...], "unknown": [...]}``;
    each customer has ``status`` scored or rejected (with ``reason``). Unknown
    ids are listed, not fatal; BadInputError (65) when no id is known.
    """
    ids = sorted({int(i) for i in customer_ids})
    if not ids:
        raise UsageError("give at least one customer id")
    model = load_model(settings)
    run = None
    if write:
        run = score_customers(settings, mode="adhoc", model_version=model.version, customer_ids=ids)
    from mallscore.warehouse import connect

    con = connect(settings.warehouse, read_only=True, lock_timeout=settings.lock_timeout)
    try:
        con.execute("set enable_progress_bar = false")
        customers = _score_ids(con, model, ids)
    finally:
        con.close()
    known = {c["customer_id"] for c in customers}
    unknown = [i for i in ids if i not in known]
    if not customers:
        raise BadInputError(f"no such customer: {describe_ids(unknown)} (none of the ids is in the warehouse)")
    return {
        "model_version": model.version,
        "run_id": run["run_id"] if run else None,
        "customers": customers,
        "unknown": unknown,
    }


def _score_ids(con: duckdb.DuckDBPyConnection, model: LoadedModel, ids: list[int]) -> list[dict]:
    """Validate, score and segment a few customers in memory (no Arrow, no write)."""
    import numpy as np

    contract = model.contract
    has_score = check_columns(contract, feature_columns(con, contract.feature_table))
    params = {**contract_params(contract), "model_version": model.version, "ids": ids}
    query = scoring_input_sql(contract, mode="adhoc", has_score=has_score) + " order by customer_id"
    cursor = con.execute(query, bound(query, params))
    columns = [d[0] for d in cursor.description]
    rows = [dict(zip(columns, r)) for r in cursor.fetchall()]
    valid = [r for r in rows if r["reason"] is None]
    result = {
        r["customer_id"]: {
            "customer_id": r["customer_id"],
            "status": "rejected",
            "reason": r["reason"],
            "p_high_spender": None,
            "predicted_high_spender": None,
            "segment": None,
            "basis": None,
        }
        for r in rows
    }
    if valid:
        feeds = {
            n: np.array([[r[feature_column(i)]] for r in valid], dtype=np.float32)
            for i, n in enumerate(contract.inputs)
        }
        p = predict(model, feeds)
        seg_query = (
            "with scored as (select cast(unnest($cid) as bigint) as customer_id, cast(unnest($p) as double) as p, "
            "cast(unnest($score) as double) as observed_score) "
            f"select customer_id, p, p >= $threshold, {segment_sql(contract)}, {basis_sql()} from scored"
        )
        seg_params = {
            **contract_params(contract),
            "cid": [r["customer_id"] for r in valid],
            "p": [float(x) for x in p],
            "score": [r["observed_score"] for r in valid],
        }
        for cid, prob, predicted, segment, basis in con.execute(seg_query, bound(seg_query, seg_params)).fetchall():
            result[cid].update(
                status="scored", p_high_spender=prob, predicted_high_spender=predicted, segment=segment, basis=basis
            )
    return [result[i] for i in sorted(result)]


def recent_runs(settings: Settings, limit: int = 20) -> list[dict]:
    """The most recent scoring runs, newest first (read-only; waits for the lock like the job)."""
    from mallscore.warehouse import connect

    con = connect(settings.warehouse, read_only=True, lock_timeout=settings.lock_timeout)
    try:
        present = feature_columns(con, "scoring_runs")
        if not present:
            return []
        columns = [c for c in RUN_COLUMNS if c in present]  # a warehouse not yet scored by this version lacks engine
        rows = con.execute(
            f"select {', '.join(columns)} from scoring_runs order by started_at desc, run_id desc limit ?", [limit]
        ).fetchall()
    finally:
        con.close()
    return [{c: None for c in RUN_COLUMNS} | dict(zip(columns, r)) for r in rows]


def segment_summary(settings: Settings) -> list[dict]:
    """``segment_summary`` as read from the analyst snapshot (read-only: never blocks a run)."""
    from mallscore.errors import InputMissingError

    if not settings.snapshot.exists():
        raise InputMissingError(f"no analyst snapshot at {settings.snapshot} yet: run `mallscore score` first")
    con = duckdb.connect(str(settings.snapshot), read_only=True, config={"enable_external_access": "false"})
    try:
        rows = con.execute("select segment, customers, mean_p_high_spender, share from segment_summary").fetchall()
    finally:
        con.close()
    return [dict(zip(("segment", "customers", "mean_p_high_spender", "share"), r)) for r in rows]
