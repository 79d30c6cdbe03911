"""Load customers into ``raw_customers`` without ever losing or silently dropping a row.

Sources (a CSV file here; a database query elsewhere) only produce raw text rows
with their line numbers, as a stream of Arrow batches. One SQL file
(``sql/ingest/validate_customers.sql``) validates them all as they stream into
DuckDB, so every source shares the same rules; the statements beside it reject
ids given twice, upsert the valid rows (the newest load wins, identical rows
change nothing), quarantine every other row in ``rejected_rows`` with a reason,
and record the load, all in one transaction. ``rows in = loaded + rejected`` always.

A CSV file is read in blocks of a few MiB: numpy finds the line breaks and the
separators, and each required column is handed to DuckDB as a zero-copy view of
the block (no Python loop over rows). Only lines that need real CSV parsing
(quotes, blank lines, the wrong number of fields) go through Python's ``csv``
module, one line at a time. Memory stays flat: a block in Python, and DuckDB
capped at ``INGEST_MEMORY_LIMIT`` (it spills to ``<warehouse>.tmp`` beyond it).

A CSV load parses its plain rows (plain fields inside the ranges) in the reader
and only the other lines go through the stage (:func:`_load_parsed`). A load of
new customers (a first load, or a night's new customers) takes the direct route:
its plain rows stream straight into ``raw_customers``, written once. A load that
updates customers takes the upsert route: its plain rows go to a typed table and
are compared with the customers loaded, as the stage does. When a route cannot
give exactly what the stage gives (an id on two lines, more than
``SIDE_ROWS_LIMIT`` other lines), the load is rolled back and runs through the
stage, in a new transaction: the result is the same. ``LoadResult.route`` says
which route a load took.
"""

from __future__ import annotations

import itertools
import os
import queue
import secrets
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from mallscore.csvsource import (
    BLOCK_BYTES,
    COLUMNS,
    PLAIN_SCHEMA,
    STAGE_SCHEMA,
    RetryLatin1,
    csv_batches,
    csv_chunks,
    csv_split,
    map_header,
    plain_ids,
    read_header,
)
from mallscore.errors import MallscoreError
from mallscore.specs import AGE, SPENDING_SCORE
from mallscore.warehouse import sql_query

__all__ = ["BLOCK_BYTES", "COLUMNS", "STAGE_SCHEMA", "csv_chunks", "map_header"]  # re-exported

CHUNK_ROWS = 50_000  # rows per chunk of a database source
INGEST_MEMORY_LIMIT = "128MB"  # DuckDB's memory during a load; beyond it, it spills to <warehouse>.tmp
# Deleting the customers a load changes joins them with raw_customers. Under INGEST_MEMORY_LIMIT, 1M changed
# of 10M ran out of memory (the buffer pool full of the transaction's own rows, as in scoring); with this cap
# and ranges of about UPSERT_CHUNK_ROWS changed-or-not rows, 10M changed of 10M did not.
UPSERT_MEMORY_LIMIT = "256MB"
UPSERT_CHUNK_ROWS = 2_500_000
SIDE_ROWS_LIMIT = 200_000  # lines a direct load holds in memory for the stage; beyond, the load takes the stage
# The ranges validation applies (validate_customers.sql), the model inputs' own: one definition.
RULE_PARAMS = {
    "age_min": int(AGE.min),
    "age_max": int(AGE.max),
    "score_min": int(SPENDING_SCORE.min),
    "score_max": int(SPENDING_SCORE.max),
}


@dataclass(frozen=True)
class LoadResult:
    """What one ingest did. ``rows_in_file == loaded + rejected`` always holds."""

    load_id: str
    rows_in_file: int
    loaded: int
    rejected: int
    inserted: int
    updated: int
    unchanged: int
    source: str
    route: str = "stage"  # or "direct", "upsert": how its plain rows were written (see _load_parsed)

    def as_dict(self) -> dict:
        """The result as a JSON-ready dict."""
        return asdict(self)


def new_load_id(now: datetime | None = None) -> str:
    """A sortable, unique load id such as ``L20261127T090000Z-1a2b3c``."""
    now = now or datetime.now(UTC)
    return f"L{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


# --- loading -------------------------------------------------------------------------


class _Stream:
    """Batches handed to DuckDB as one Arrow stream; remembers an error raised while DuckDB pulled them."""

    def __init__(self, chunks: Iterable[pa.Table | pa.RecordBatch]) -> None:
        self.error: BaseException | None = None
        self._chunks = chunks

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            for chunk in self._chunks:
                if isinstance(chunk, pa.Table):
                    if "plain" not in chunk.column_names:
                        chunk = chunk.append_column("plain", pa.array(np.zeros(chunk.num_rows, bool)))
                    yield from chunk.select(STAGE_SCHEMA.names).cast(STAGE_SCHEMA).to_batches()
                else:
                    yield chunk
        except BaseException as exc:
            self.error = exc
            raise

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(STAGE_SCHEMA, self._batches())


def _tuned(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Cap DuckDB's memory for the load (it spills beyond) and drop insertion order; return what to restore."""
    names = ("memory_limit", "preserve_insertion_order")
    before = dict(zip(names, con.execute(f"select {', '.join(f'current_setting({n!r})' for n in names)}").fetchone()))
    con.execute(f"set memory_limit = '{INGEST_MEMORY_LIMIT}'")
    con.execute("set preserve_insertion_order = false")
    return before


def _restore(con: duckdb.DuckDBPyConnection, before: dict[str, str]) -> None:
    try:
        con.execute("set memory_limit = $v", {"v": str(before["memory_limit"])})
    except duckdb.Error:
        con.execute("reset memory_limit")
    con.execute(f"set preserve_insertion_order = {str(before['preserve_insertion_order']).lower() == 'true'}")


def _quietly(action: Any, *args: Any) -> None:
    """Clean up after a failure without hiding it: the first error is the one a person must see."""
    try:
        action(*args)
    except duckdb.Error:
        pass


def load_chunks(
    con: duckdb.DuckDBPyConnection,
    chunks: Iterable[pa.Table | pa.RecordBatch],
    source: str,
    load_id: str | None = None,
) -> LoadResult:
    """Validate and upsert raw rows from any source, all in one transaction."""
    load_id = load_id or new_load_id()
    started = datetime.now(UTC).replace(tzinfo=None)
    iterator = iter(chunks)
    first = next(iterator, None)  # a source's own errors (header, connection) surface here, before any write
    stream = _Stream(itertools.chain([first] if first is not None else [], iterator))
    before = _tuned(con)
    con.begin()
    try:
        con.register("incoming_customers", stream.reader())
        try:
            con.execute(sql_query("ingest/validate_customers"), RULE_PARAMS)
        except duckdb.Error:
            if stream.error is not None:
                raise stream.error from None
            raise
        finally:
            _quietly(con.unregister, "incoming_customers")
        result = _reject_and_upsert(con, load_id, source, started)
        con.execute("drop table mallscore_ingest_stage")  # never committed: it lived only inside this transaction
        con.execute("drop table ingest_duplicate_ids")
        con.commit()
    except BaseException:
        _quietly(con.rollback)  # after a failed write (a full disk) DuckDB may have ended the transaction itself
        raise
    finally:
        _quietly(_restore, con, before)
    return result


def _read_ahead(items: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """``items`` produced by a thread, up to ``depth`` ahead: the next block is cut (numpy, GIL released)
    while DuckDB validates this one. An error in the thread is raised here, in order."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            put(("error", exc))

    thread = threading.Thread(target=produce, name="mallscore-csv-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()  # the consumer stopped (done, failed or abandoned): the thread ends at its next step


def ingest_csv(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    *,
    name: str | None = None,
    direct: bool = True,
    block_bytes: int = BLOCK_BYTES,
) -> LoadResult:
    """Load one customers CSV file (see module docstring for the rules); ``name`` is recorded as its source.

    ``direct=False`` always takes the stage (tests compare the two routes).
    """
    path = Path(path)
    source = f"csv:{name or path.name}"
    try:
        if direct:
            try:
                return _load_parsed(con, csv_split(path, block_bytes), source)
            except _TakeTheStage as why:
                upsert = why.upsert
            if upsert:
                try:
                    return _load_parsed(con, csv_split(path, block_bytes), source, upsert=True)
                except _TakeTheStage:
                    pass
        return load_chunks(con, _read_ahead(csv_chunks(path, block_bytes)), source=source)
    except RetryLatin1:
        return load_chunks(con, _read_ahead(csv_batches(read_header(path, "latin-1"), block_bytes)), source=source)


class _TakeTheStage(Exception):
    """A parsed load cannot give exactly what the stage gives here: it was rolled back; load again through
    the upsert route (``upsert``: the plain rows update customers already loaded) or the stage."""

    def __init__(self, why: str, *, upsert: bool = False) -> None:
        super().__init__(why)
        self.upsert = upsert


class _Router:
    """The reader's batches split for a parsed load: plain ones streamed to DuckDB, the others kept for the stage."""

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        self.error: BaseException | None = None
        self.side: list[pa.RecordBatch] = []
        self.side_rows = 0
        self.plain_rows = 0
        self.increasing = True  # every plain row's id above the one before: no id is on two plain rows
        self._last = None
        self._batches = batches
        self._routed = self._route()
        self._head: list[pa.RecordBatch] = []

    def _route(self) -> Iterator[pa.RecordBatch]:
        for batch in self._batches:
            if batch.schema is not PLAIN_SCHEMA and not batch.schema.equals(PLAIN_SCHEMA):
                self.side.append(batch)
                self.side_rows += batch.num_rows
                if self.side_rows > 2 * SIDE_ROWS_LIMIT:  # filler rows included (see csv_chunks)
                    raise _TakeTheStage(f"more than {SIDE_ROWS_LIMIT:,} lines need the full rules")
                continue
            ids = plain_ids(batch)
            if len(ids):
                if ids[0] == self._last or (ids[1:] == ids[:-1]).any():  # found early: no wasted write
                    raise _TakeTheStage("an id is given on two lines in a row")
                if self.increasing:
                    self.increasing = bool((ids[1:] > ids[:-1]).all()) and (self._last is None or ids[0] > self._last)
                self._last = ids[-1]
            self.plain_rows += batch.num_rows
            yield batch

    def peek(self) -> pa.RecordBatch | None:
        """The first plain batch (read now, streamed first later), or None when there is none."""
        if not self._head:
            try:
                self._head.append(next(self._routed))
            except StopIteration:
                return None
        return self._head[0]

    def _plain(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._head
            yield from self._routed
        except BaseException as exc:
            self.error = exc
            raise

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(PLAIN_SCHEMA, self._plain())

    def side_table(self) -> pa.Table:
        return pa.Table.from_batches(self.side, STAGE_SCHEMA)

    def close(self) -> None:
        """Stop the reader thread now (a load that takes the stage starts a new one on the same file)."""
        close = getattr(self._batches, "close", None)
        if close is not None:
            close()


def _count(con: duckdb.DuckDBPyConnection, name: str, params: dict | None = None) -> int:
    return int(con.execute(sql_query(name), params or {}).fetchall()[0][0])


def _load_parsed(
    con: duckdb.DuckDBPyConnection, batches: Iterator[pa.RecordBatch], source: str, *, upsert: bool = False
) -> LoadResult:
    """A CSV load of ``csv_split``'s batches: the plain rows arrive parsed, only the other lines take the stage.

    The direct route (``upsert=False``) writes the plain rows once, straight into
    ``raw_customers``: they must be new customers. The upsert route keeps them in
    ``mallscore_ingest_plain`` (typed, with their line numbers) and compares them with
    the customers loaded, as the stage does. Raises _TakeTheStage (after rolling back)
    where that is not exact: plain rows that update customers (direct route: try the
    upsert route), an id on two lines, too many other lines (the stage).
    """
    load_id, started = new_load_id(), datetime.now(UTC).replace(tzinfo=None)
    router = _Router(_read_ahead(batches))
    before = _tuned(con)
    con.begin()
    try:
        known = _count(con, "ingest/has_customers") > 0
        if not upsert and known and (head := router.peek()) is not None:  # updates usually show in block one
            con.register("plain_head", head)
            try:
                if _count(con, "ingest/plain_known"):
                    raise _TakeTheStage("the file updates customers already loaded", upsert=True)
            finally:
                _quietly(con.unregister, "plain_head")
        now = datetime.now(UTC).replace(tzinfo=None)
        con.register("plain_customers", router.reader())
        try:
            if upsert:
                con.execute(sql_query("ingest/stage_plain"), RULE_PARAMS)
                written = int(con.execute("select count(*) from mallscore_ingest_plain").fetchall()[0][0])
            else:
                written = _count(con, "ingest/insert_plain", {**RULE_PARAMS, "load_id": load_id, "now": now})
        except duckdb.Error:
            if router.error is not None:
                raise router.error from None
            raise
        finally:
            _quietly(con.unregister, "plain_customers")
        if written != router.plain_rows:
            raise _TakeTheStage(f"{router.plain_rows - written} plain rows failed the rules")
        if not upsert and known and _count(con, "ingest/plain_updates", {"load_id": load_id}):
            raise _TakeTheStage("the file updates customers already loaded", upsert=True)
        con.register("incoming_customers", router.side_table())
        try:
            con.execute(sql_query("ingest/validate_customers"), RULE_PARAMS)
        finally:
            _quietly(con.unregister, "incoming_customers")
        router.side.clear()
        table = "plain_table" if upsert else "plain"
        clashes = _count(con, f"ingest/{table}_clashes", {} if upsert else {"load_id": load_id})
        if not clashes and not router.increasing:
            clashes = _count(con, f"ingest/{table}_repeats", {} if upsert else {"load_id": load_id})
        if clashes:
            raise _TakeTheStage("an id is given on more than one line")
        plain = (written, written, 0, 0)
        if upsert:
            con.execute(sql_query("ingest/plain_changes"))
            inserted, updated = (int(n) for n in con.execute(sql_query("ingest/plain_upsert_counts")).fetchall()[0])
            if updated:
                _delete_changed(con, "plain", updated)
            if inserted or updated:
                left = int(con.execute("select count(*) from raw_customers").fetchall()[0][0])
                insert = "plain_insert_customers" if inserted + updated <= left else "plain_insert_most"
                con.execute(sql_query(f"ingest/{insert}"), {"load_id": load_id, "now": now})
            con.execute("drop table mallscore_ingest_plain")
            con.execute("drop table ingest_plain_upserts")
            plain = (written, inserted, updated, written - inserted - updated)
        result = _reject_and_upsert(con, load_id, source, started, now=now, plain=plain)
        result = replace(result, route="upsert" if upsert else "direct")
        con.execute("drop table mallscore_ingest_stage")
        con.execute("drop table ingest_duplicate_ids")
        con.commit()
    except BaseException:
        _quietly(con.rollback)
        raise
    finally:
        router.close()
        _quietly(_restore, con, before)
    return result


def _delete_changed(con: duckdb.DuckDBPyConnection, rows: str, count: int) -> None:
    """Delete the customers a load changes (``rows``: "stage" or "plain", ``count`` of them), a range of ids
    at a time under UPSERT_MEMORY_LIMIT (the load's own cap comes back with _restore)."""
    parts = max(1, -(-count // UPSERT_CHUNK_ROWS))
    cuts: list[int] = []
    if parts > 1:
        shares = [i / parts for i in range(1, parts)]
        found = con.execute(sql_query(f"ingest/{rows}_id_cuts"), {"shares": shares}).fetchall()[0][0] or []
        cuts = sorted({int(c) for c in found})
    edges = [-(2**63), *(c + 1 for c in cuts if c < 2**63 - 1)]
    con.execute(f"set memory_limit = '{UPSERT_MEMORY_LIMIT}'")
    statement = sql_query("ingest/plain_delete_changed" if rows == "plain" else "ingest/delete_changed")
    for lo, hi in zip(edges, [*(e - 1 for e in edges[1:]), 2**63 - 1]):
        con.execute(statement, {"lo": lo, "hi": hi})


def _reject_and_upsert(
    con: duckdb.DuckDBPyConnection,
    load_id: str,
    source: str,
    started: datetime,
    *,
    now: datetime | None = None,
    plain: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> LoadResult:
    """Apply the whole-input rule, quarantine, upsert and record the load (the stage's rows).

    ``plain``: (rows, inserted, updated, unchanged) of the plain rows a parsed load upserted already.
    """
    con.execute(sql_query("ingest/duplicate_ids"))
    if con.execute("select count(*) from ingest_duplicate_ids").fetchone()[0]:
        con.execute(sql_query("ingest/mark_duplicates"))
    rows_in, rejected, inserted, updated, unchanged = con.execute(sql_query("ingest/count_changes")).fetchone()
    now = now or datetime.now(UTC).replace(tzinfo=None)
    if rejected:
        con.execute(sql_query("ingest/insert_rejected"), {"load_id": load_id, "now": now})
    if updated:
        _delete_changed(con, "stage", rows_in - rejected)
    if inserted or updated:
        con.execute(sql_query("ingest/insert_customers"), {"load_id": load_id, "now": now})
    rows_in, inserted, updated, unchanged = (a + b for a, b in zip((rows_in, inserted, updated, unchanged), plain))
    loaded = rows_in - rejected
    con.execute(
        sql_query("ingest/insert_load"),
        {
            "load_id": load_id,
            "source": source,
            "started": started,
            "now": now,
            "rows_in": rows_in,
            "loaded": loaded,
            "rejected": rejected,
            "inserted": inserted,
            "updated": updated,
            "unchanged": unchanged,
        },
    )
    return LoadResult(
        load_id, int(rows_in), int(loaded), int(rejected), int(inserted), int(updated), int(unchanged), source
    )


STDIN = "-"


def is_stream(path: Path) -> bool:
    """True for ``-`` (standard input), a pipe (FIFO) or a character device: input that can be read only once."""
    if str(path) == STDIN:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


@contextmanager
def spooled(path: Path, folder: Path) -> Iterator[tuple[Path, str]]:
    """A stream's bytes copied to a private file in ``folder``; yields (file, the name to report).

    Ingest reads its input more than once (sniffing, the header, the blocks, a
    Latin-1 retry), and the warehouse lock must never be held while a pipe's
    writer is still producing: the CLI spools first, then takes the lock. A
    regular file is used in place. Messages name the stream, not the spool file.
    """
    if not is_stream(path):
        yield Path(path), Path(path).name
        return
    name = "stdin" if str(path) == STDIN else Path(path).name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, spool = tempfile.mkstemp(dir=folder, prefix=".ingest-spool-", suffix=".csv")
    spool_path = Path(spool)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            if str(path) == STDIN:
                shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
            else:
                with open(path, "rb") as stream:
                    shutil.copyfileobj(stream, out, 1 << 20)
        try:
            yield spool_path, name
        except MallscoreError as exc:
            exc.args = tuple(str(a).replace(str(spool_path), name) for a in exc.args)
            raise
    finally:
        spool_path.unlink(missing_ok=True)
