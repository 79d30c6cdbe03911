"""Scoring with onnxruntime in one streaming pass: candidates out as Arrow batches, probabilities straight back.

The valid candidates of each batch are scored on float32 and handed back to
DuckDB as the Arrow stream ``run_scored`` (with their features), which
``sql/scoring/insert_segments.sql`` reads in one INSERT through the view
``run_reasoned`` (the top reason, :mod:`mallscore.reasons`): no copy of the data in Python, memory bounded by the
batch size. Rejected rows are spilled to a temporary Arrow file and inserted
afterwards as ``run_rejected``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb

from mallscore.contract import feature_column
from mallscore.groups.assign import assign_batch, group_type
from mallscore.scoring.model import LoadedModel, predict

BATCH_ROWS = 1 << 16  # see run.JOB_SETTINGS: two threads may each hold a batch; smaller is faster down to 64Ki
Progress = Callable[[int, int], None]
Lap = Callable[[str, float], float]


class Spill:
    """Rejected rows written to a temporary Arrow IPC file, so memory stays flat however many there are."""

    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory | None = None
        self._writer: Any = None
        self.rows = 0
        self.path: Path | None = None

    def write(self, batch: Any) -> None:
        """Append a batch of rejected rows."""
        import pyarrow.ipc as ipc

        if self._writer is None:
            self._dir = tempfile.TemporaryDirectory(prefix="mallscore-rejected-")
            self.path = Path(self._dir.name) / "rejected.arrows"
            self._writer = ipc.new_stream(str(self.path), batch.schema)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def reader(self) -> Any:
        """The spilled rows as an Arrow stream reader (closes the writer)."""
        import pyarrow.ipc as ipc

        self._writer.close()
        self._writer = None
        return ipc.open_stream(str(self.path))

    def close(self) -> None:
        """Remove the temporary file."""
        if self._writer is not None:
            self._writer.close()
        if self._dir is not None:
            self._dir.cleanup()


def stream_and_insert(
    con: duckdb.DuckDBPyConnection,
    reader_con: duckdb.DuckDBPyConnection,
    model: LoadedModel,
    params: dict,
    spill: Spill,
    lap: Lap,
    progress: Progress | None,
    batch_rows: int = BATCH_ROWS,
    observe: Callable[[list, Any], None] | None = None,
) -> int:
    """Stream ``run_candidates`` out of ``reader_con``, score them, insert them through ``con``; return rows scored.

    Both connections hold the run's relations (:func:`mallscore.scoring.relations.prepare`).
    ``lap(phase, since)`` adds the time since ``since`` to a phase and returns now.
    ``observe(features, p)`` sees every scored batch (the drift's bin counts).
    """
    import pyarrow as pa

    from mallscore.scoring.relations import run_statement

    contract = model.contract
    total = 0
    if progress is not None:
        total = int(reader_con.execute("select count(*) from run_candidates").fetchall()[0][0])
        progress(0, total)
    reader = reader_con.sql("select * from run_candidates").to_arrow_reader(batch_rows)
    inputs = {name: feature_column(i) for i, name in enumerate(contract.inputs)}
    out_schema = pa.schema(
        [
            reader.schema.field("customer_id"),
            reader.schema.field("updated_at"),
            reader.schema.field("observed_score"),
            *(reader.schema.field(c) for c in inputs.values()),  # the features, for top_reason (run_reasoned)
            pa.field("p", pa.float32()),
            pa.field("behaviour_group", group_type()),
        ]
    )
    state: dict[str, Any] = {"scored": 0, "seen": 0, "error": None}

    def scored_batches() -> Iterator[Any]:
        try:
            batches = iter(reader)
            while True:
                started = time.perf_counter()
                batch = next(batches, None)
                started = lap("read_validate", started)
                if batch is None:
                    return
                state["seen"] += batch.num_rows
                reason = batch.column("reason")
                if reason.null_count != batch.num_rows:
                    import pyarrow.compute as pc  # ~40 ms to import: only when a batch has rejected rows

                    spill.write(batch.filter(pc.is_valid(reason)).select(["customer_id", "raw_values", "reason"]))
                    batch = batch.filter(pc.is_null(reason))
                started = lap("write", started)
                if batch.num_rows:
                    feeds = {n: as_numpy(batch.column(c)).reshape(-1, 1) for n, c in inputs.items()}
                    p = predict(model, feeds)
                    group = assign_batch(model.groups, batch)  # the groups champion's, in the same pass
                    started = lap("score", started)
                    if observe is not None:
                        observe(list(feeds.values()), p)
                        started = lap("monitor", started)
                    state["scored"] += batch.num_rows
                    yield pa.RecordBatch.from_arrays(
                        [
                            batch.column("customer_id"),
                            batch.column("updated_at"),
                            batch.column("observed_score"),
                            *(batch.column(c) for c in inputs.values()),
                            as_arrow(p),
                            group,
                        ],
                        schema=out_schema,
                    )
                if progress is not None:
                    progress(state["seen"], total)
        except BaseException as exc:  # surfaced after DuckDB wraps it
            state["error"] = exc
            raise

    con.register("run_scored", pa.RecordBatchReader.from_batches(out_schema, scored_batches()))
    try:
        con.execute(model.reasons_sql)  # run_reasoned: run_scored with top_reason (mallscore.reasons)
        run_statement(con, "insert_segments", params)
    except duckdb.Error:
        if state["error"] is not None:
            raise state["error"] from None
        raise
    finally:
        unregister(con, "run_scored")
        reader.close()  # a failed run's traceback must not keep the database instance alive through it
    return state["scored"]


def insert_spilled(con: duckdb.DuckDBPyConnection, spill: Spill, params: dict) -> None:
    """Insert the spilled rejected rows into ``rejected_rows`` (sql/scoring/insert_rejected.sql)."""
    from mallscore.scoring.relations import run_statement

    if not spill.rows:
        return
    con.register("run_rejected", spill.reader())
    try:
        run_statement(con, "insert_rejected", params)
    finally:
        unregister(con, "run_rejected")


def as_numpy(array: Any) -> Any:
    """A float32 Arrow array without nulls as a zero-copy numpy view (``to_numpy`` would import pandas)."""
    import numpy as np

    if array.null_count or str(array.type) != "float":
        raise RuntimeError(
            f"internal error: expected float32 without nulls, got {array.type} with {array.null_count} null(s)"
        )
    return np.frombuffer(array.buffers()[1], dtype=np.float32, count=len(array), offset=array.offset * 4)


def as_arrow(values: Any) -> Any:
    """A contiguous float32 numpy array as an Arrow array, zero-copy (``pa.array`` would import pandas)."""
    import pyarrow as pa

    return pa.Array.from_buffers(pa.float32(), len(values), [None, pa.py_buffer(values)])


def unregister(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop a registered Arrow source, ignoring a connection whose transaction already failed."""
    try:
        con.unregister(name)
    except duckdb.Error:
        pass  # the transaction failed; the rollback that follows drops nothing we need
