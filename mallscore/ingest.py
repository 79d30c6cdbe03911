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
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import os
import queue
import re
import secrets
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from mallscore.errors import BadInputError, InputMissingError, MallscoreError
from mallscore.warehouse import sql_query

COLUMNS = ("customer_id", "gender", "age", "annual_income", "spending_score")

# Accepted header spellings (compared after lower-casing and collapsing spaces).
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "customer_id": ("customerid", "customer_id", "customer id"),
    "gender": ("gender", "genre"),
    "age": ("age",),
    "annual_income": ("annual income (k$)", "annual_income_thousands", "annual_income", "annual income"),
    "spending_score": ("spending score (1-100)", "spending_score", "spending score"),
}
_ALIAS_TO_COLUMN = {alias: column for column, aliases in HEADER_ALIASES.items() for alias in aliases}
_DELIMITERS = (",", ";", "\t", "|")
CHUNK_ROWS = 50_000  # rows per chunk of a database source
BLOCK_BYTES = 4 << 20  # bytes of a CSV file read at once
INGEST_MEMORY_LIMIT = "128MB"  # DuckDB's memory during a load; beyond it, it spills to <warehouse>.tmp
STAGE_SCHEMA = pa.schema(
    [
        ("line_no", pa.int64()),
        *((name, pa.string()) for name in COLUMNS),
        ("problem", pa.string()),
        ("plain", pa.bool_()),  # every field in its plain form (see _plain_rows): validation takes a short cut
    ]
)


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

    def as_dict(self) -> dict:
        """The result as a JSON-ready dict."""
        return asdict(self)


def new_load_id(now: datetime | None = None) -> str:
    """A sortable, unique load id such as ``L20261127T090000Z-1a2b3c``."""
    now = now or datetime.now(UTC)
    return f"L{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def normalise_header(name: str) -> str:
    """Lower-case a header cell and collapse its spaces, for matching."""
    return re.sub(r"\s+", " ", name.replace("\ufeff", "").strip().lower())


def map_header(header: Sequence[str], source: str) -> list[int]:
    """Positions of the required columns in ``header``, in COLUMNS order.

    Raises BadInputError when a required column is missing or given twice.
    """
    positions: dict[str, int] = {}
    for index, cell in enumerate(header):
        column = _ALIAS_TO_COLUMN.get(normalise_header(cell))
        if column is None:
            continue  # extra columns are ignored
        if column in positions:
            raise BadInputError(
                f"{source}: column {column!r} appears twice in the header "
                f"({header[positions[column]]!r} and {cell!r}); keep one"
            )
        positions[column] = index
    missing = [c for c in COLUMNS if c not in positions]
    if missing:
        accepted = "; ".join(f"{c}: {' / '.join(HEADER_ALIASES[c])}" for c in missing)
        raise BadInputError(f"{source}: required column(s) missing from the header: {accepted}")
    return [positions[c] for c in COLUMNS]


# --- CSV source --------------------------------------------------------------------


def _sniff_encoding_and_shape(path: Path) -> str:
    """Refuse files that are clearly not CSV; return the text encoding to read with."""
    try:
        with path.open("rb") as handle:
            head = handle.read(65536)
    except FileNotFoundError:
        raise InputMissingError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputMissingError(f"{path}: is a directory, not a CSV file") from None
    except OSError as exc:
        raise InputMissingError(f"{path}: cannot be read ({exc.strerror})") from None
    if not head.strip():
        raise BadInputError(f"{path}: the file is empty; expected a CSV header and rows")
    if b"\x00" in head:
        raise BadInputError(f"{path}: binary data (NUL bytes), not a CSV text file")
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] in (b"{", b"["):
        raise BadInputError(f"{path}: looks like JSON, not CSV; export the customers as CSV with a header line")
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 13))
    if controls > len(head) * 0.01:
        raise BadInputError(f"{path}: binary data (control bytes), not a CSV text file")
    try:
        # not final: a multi-byte character cut at the end of the block is not an error
        codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return "latin-1"


def _pick_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


class _RetryLatin1(Exception):
    """Raised when a UTF-8 file turns out to contain invalid bytes past its head."""


@dataclass(frozen=True)
class _CsvLayout:
    """What the header says: the separator, how many fields a line has, where the required ones are."""

    path: Path
    encoding: str
    delimiter: str
    width: int
    positions: tuple[int, ...]
    data_offset: int  # byte offset of the first line after the header
    first_line: int  # its line number
    old_mac: bool  # lines end with a lone carriage return


def _read_header(path: Path, encoding: str) -> _CsvLayout:
    """Find the header (the first non-blank line), map its columns, and say where the rows start."""
    with path.open("rb") as handle:
        line_no = 0
        while True:
            raw = handle.readline()
            line_no += 1
            if not raw:
                raise BadInputError(f"{path}: the file is empty; expected a CSV header and rows")
            try:
                text = (
                    raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
                    if encoding == "utf-8"
                    else raw.decode(encoding)
                )
            except UnicodeDecodeError:
                raise _RetryLatin1() from None
            if text.strip():
                break
        old_mac = "\r" in text.rstrip("\r\n")
        if old_mac:  # classic Mac line endings: the "line" read is the whole file; take its first line
            text = text.split("\r", 1)[0]
        offset = handle.tell()
    delimiter = _pick_delimiter(text)
    try:
        header = next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter))
    except (csv.Error, StopIteration):
        raise BadInputError(f"{path}: not a readable CSV header on line {line_no}") from None
    positions = map_header(header, str(path))
    return _CsvLayout(path, encoding, delimiter, len(header), tuple(positions), offset, line_no + 1, old_mac)


def _record_cut(buf: bytes) -> int:
    """Bytes of ``buf`` that end at a line break outside quotes (0: no such break yet)."""
    if b'"' not in buf:
        return buf.rfind(b"\n") + 1
    arr = np.frombuffer(buf, np.uint8)
    breaks = np.flatnonzero(arr == 10)
    quotes = np.flatnonzero(arr == 34)
    outside = np.flatnonzero(np.searchsorted(quotes, breaks) % 2 == 0)
    if len(outside):
        return int(breaks[outside[-1]]) + 1
    if len(buf) > 16 * BLOCK_BYTES and len(breaks):  # an unbalanced quote: do not hold the whole file
        return int(breaks[-1]) + 1
    return 0


def _raw_blocks(layout: _CsvLayout, block_bytes: int) -> Iterator[bytes]:
    """The file after its header as UTF-8 blocks that each end at a line break outside quotes."""
    if layout.old_mac:  # rare: universal newlines through Python's text layer
        with layout.path.open("r", encoding=layout.encoding, errors="strict", newline=None) as text:
            text.readline()
            while chunk := text.read(block_bytes):
                yield chunk.encode("utf-8")
        return
    with layout.path.open("rb") as handle:
        handle.seek(layout.data_offset)
        carry = b""
        while True:
            data = handle.read(block_bytes)
            if not data:
                if carry:
                    yield carry if carry.endswith(b"\n") else carry + b"\n"
                return
            buf = carry + data if carry else data
            cut = _record_cut(buf)
            if cut:
                yield buf[:cut]
            carry = buf[cut:]


def _utf8_blocks(layout: _CsvLayout, block_bytes: int) -> Iterator[bytes]:
    for block in _raw_blocks(layout, block_bytes):
        if layout.encoding == "latin-1":
            yield block.decode("latin-1").encode("utf-8")
            continue
        whole = pa.StringArray.from_buffers(1, pa.py_buffer(np.array([0, len(block)], np.int32)), pa.py_buffer(block))
        try:
            whole.validate(full=True)
        except pa.ArrowInvalid:
            raise _RetryLatin1() from None
        yield block


def _interleaved(block: bytes, starts: np.ndarray, ends: np.ndarray) -> pa.StringArray:
    """Strings block[starts[i]:ends[i]] at even positions, the bytes between them at odd ones; no copy."""
    k = len(starts)
    offsets = np.empty(2 * k + 1, np.int32)
    offsets[0 : 2 * k : 2] = starts
    offsets[1 : 2 * k : 2] = ends
    offsets[2 * k] = ends[-1]
    return pa.StringArray.from_buffers(2 * k, pa.py_buffer(offsets), pa.py_buffer(block))


def _block_batches(block: bytes, first_line: int, layout: _CsvLayout) -> tuple[list[pa.RecordBatch], int]:
    """Arrow batches (STAGE_SCHEMA) of the rows in one block, and the number of lines it held."""
    arr = np.frombuffer(block, np.uint8)
    breaks = np.flatnonzero(arr == 10)
    n = len(breaks)
    starts = np.empty(n, np.int64)
    starts[0] = 0
    starts[1:] = breaks[:-1] + 1
    cr_end = (arr[np.maximum(breaks - 1, 0)] == 13) & (breaks > starts)
    ends = breaks - cr_end
    seps = np.flatnonzero(arr == ord(layout.delimiter))
    quotes = np.flatnonzero(arr == 34)
    returns = np.flatnonzero(arr == 13)
    inner_returns = len(returns) - int(np.count_nonzero(cr_end))
    w1 = layout.width - 1
    record_ends = np.ones(n, bool)
    if not len(quotes) and not inner_returns and len(seps) == n * w1:
        # the usual block: every line has exactly width - 1 separators, no quotes
        grid = seps.reshape(n, w1)
        if (grid[:, 0] >= starts).all() and (grid[:, -1] < ends).all():
            counted = None
            if layout.width == len(COLUMNS):  # no extra column: count non-digits per line in one pass
                nondigits = ((arr - np.uint8(48)) > 9).view(np.uint8)
                counted = (np.add.reduceat(nondigits, starts, dtype=np.int32), w1 + 1 + cr_end)
            return [_fast_rows(block, np.arange(n), starts, ends, grid, first_line, layout, counted)], n
    first_sep = np.searchsorted(seps, starts)
    regular = np.searchsorted(seps, ends) - first_sep == w1
    if len(quotes):
        regular &= np.searchsorted(quotes, ends) == np.searchsorted(quotes, starts)
        record_ends = np.searchsorted(quotes, breaks) % 2 == 0  # a line break outside quotes ends a record
    if inner_returns:
        regular &= np.searchsorted(returns, ends) == np.searchsorted(returns, starts)
    batches = []
    rows = np.flatnonzero(regular)
    if len(rows):
        grid = seps[first_sep[rows][:, None] + np.arange(w1)]
        batches.append(_fast_rows(block, rows, starts[rows], ends[rows], grid, first_line, layout))
    others = np.flatnonzero(~regular)
    if len(others):
        batches.append(_parsed_rows(block, others, starts, ends, record_ends, first_line, layout))
    return batches, n


def _fast_rows(
    block: bytes,
    rows: np.ndarray,
    row_starts: np.ndarray,
    row_ends: np.ndarray,
    grid: np.ndarray,
    first_line: int,
    layout: _CsvLayout,
    counted: tuple[np.ndarray, np.ndarray] | None = None,
) -> pa.RecordBatch:
    """Rows whose lines have exactly the header's number of fields and no quotes: zero-copy column views.

    ``counted``: the non-digit bytes of each whole line and how many of them are not
    the gender's (separators, line break), when every line of the block is a row.
    """
    k = len(rows)
    columns, bounds = [], []
    for pos in layout.positions:
        field_starts = row_starts if pos == 0 else grid[:, pos - 1] + 1
        field_ends = row_ends if pos == layout.width - 1 else grid[:, pos]
        columns.append(_interleaved(block, field_starts, field_ends))
        bounds.append((field_starts, field_ends))
    line_no = np.zeros(2 * k, np.int64)
    line_no[0::2] = first_line + rows
    line_nos = pa.Array.from_buffers(pa.int64(), 2 * k, [None, pa.py_buffer(line_no)])
    plain = np.zeros(2 * k, bool)
    plain[0::2] = _plain_rows(np.frombuffer(block, np.uint8), bounds, *(counted or (None, None)))
    plains = pa.Array.from_buffers(pa.bool_(), 2 * k, [None, pa.py_buffer(np.packbits(plain, bitorder="little"))])
    return pa.RecordBatch.from_arrays([line_nos, *columns, pa.nulls(2 * k, pa.string()), plains], schema=STAGE_SCHEMA)


def _plain_rows(
    arr: np.ndarray,
    bounds: list[tuple[np.ndarray, np.ndarray]],
    line_nondigits: np.ndarray | None = None,
    line_extra: np.ndarray | None = None,
) -> np.ndarray:
    """Rows whose fields are all in their plain form, which validation reads with plain casts.

    Plain: the id 1-18 digits, gender exactly Male or Female, age 1-3 digits, income 1-9
    digits, the score empty or 1-3 digits, no number with a leading zero (so the text is
    exactly what the parsed value prints as, and need not be kept for a rejected row).
    Everything else takes the full rules; a plain row still gets the range rules.
    """
    last = len(arr) - 1
    (id_b, gender_b, age_b, income_b, score_b) = bounds
    if line_nondigits is None:  # count the non-digit bytes of each number field
        nondigits = np.zeros(len(arr) + 1, np.int32)
        np.cumsum((arr - np.uint8(48)) > 9, dtype=np.int32, out=nondigits[1:])
        digits = np.ones(len(id_b[0]), bool)
        for field_starts, field_ends in (id_b, age_b, income_b, score_b):
            digits &= nondigits[field_ends] == nondigits[field_starts]
    else:  # the line's only non-digits are its separators, the gender and the line break
        digits = line_nondigits == line_extra + (gender_b[1] - gender_b[0])

    def number(bound: tuple[np.ndarray, np.ndarray], most: int, empty_ok: bool = False) -> np.ndarray:
        starts, ends = bound
        size = ends - starts
        ok = (size >= 1) & (size <= most)
        ok &= (size == 1) | (arr[np.minimum(starts, last)] != 48)
        return ok | (size == 0) if empty_ok else ok

    def word(text: bytes) -> np.ndarray:
        starts, ends = gender_b
        ok = ends - starts == len(text)
        for i, byte in enumerate(text):
            ok &= arr[np.minimum(starts + i, last)] == byte
        return ok

    return (
        (word(b"Male") | word(b"Female"))
        & digits
        & number(id_b, 18)
        & number(age_b, 3)
        & number(income_b, 9)
        & number(score_b, 3, empty_ok=True)
    )


def _parsed_rows(
    block: bytes,
    lines: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    record_ends: np.ndarray,
    first_line: int,
    layout: _CsvLayout,
) -> pa.RecordBatch:
    """Rows of the lines that need Python's csv module: quotes, blank lines, a wrong number of fields."""
    columns: dict[str, list] = {name: [] for name in STAGE_SCHEMA.names}
    taken = -1
    for j in lines.tolist():
        if j <= taken:
            continue  # a later line of a record that spans lines
        last = j
        while not record_ends[last] and last + 1 < len(record_ends):
            last += 1
        taken = last
        text = block[starts[j] : ends[last]].decode("utf-8")
        try:
            records = list(csv.reader(io.StringIO(text, newline=""), delimiter=layout.delimiter))
        except csv.Error as exc:
            raise BadInputError(f"{layout.path}: not a readable CSV near line {first_line + j} ({exc})") from None
        for record in records:
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # a blank line is not a row
            columns["line_no"].append(first_line + j)
            for name, pos in zip(COLUMNS, layout.positions):
                columns[name].append(record[pos] if pos < len(record) else None)
            columns["problem"].append(
                None if len(record) == layout.width else f"line has {len(record)} fields, the header has {layout.width}"
            )
            columns["plain"].append(False)
    return pa.RecordBatch.from_pydict(columns, schema=STAGE_SCHEMA)


def _csv_batches(layout: _CsvLayout, block_bytes: int) -> Iterator[pa.RecordBatch]:
    csv.field_size_limit(sys.maxsize)
    line = layout.first_line
    for block in _utf8_blocks(layout, block_bytes):
        batches, lines = _block_batches(block, line, layout)
        yield from batches
        line += lines


def csv_chunks(path: Path, block_bytes: int = BLOCK_BYTES) -> Iterator[pa.RecordBatch]:
    """Raw text rows of a customers CSV as Arrow batches (``line_no`` + COLUMNS + ``problem``).

    Blank lines are skipped (they are not rows). A row with the wrong number of
    fields keeps its text and is rejected by validation with a reason. Batches
    of the fast path carry filler rows (``line_no`` 0) that validation drops.
    Raises the whole-file errors (missing, empty, binary, JSON, header) at once,
    before the first batch is asked for.
    """
    path = Path(path)
    encoding = _sniff_encoding_and_shape(path)
    try:
        layout = _read_header(path, encoding)
    except _RetryLatin1:
        layout = _read_header(path, "latin-1")
    return _csv_batches(layout, block_bytes)


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
            con.execute(sql_query("ingest/validate_customers"))
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


def ingest_csv(con: duckdb.DuckDBPyConnection, path: Path, *, name: str | None = None) -> LoadResult:
    """Load one customers CSV file (see module docstring for the rules); ``name`` is recorded as its source."""
    path = Path(path)
    source = f"csv:{name or path.name}"
    try:
        return load_chunks(con, _read_ahead(csv_chunks(path)), source=source)
    except _RetryLatin1:
        return load_chunks(con, _read_ahead(_csv_batches(_read_header(path, "latin-1"), BLOCK_BYTES)), source=source)


def _reject_and_upsert(con: duckdb.DuckDBPyConnection, load_id: str, source: str, started: datetime) -> LoadResult:
    con.execute(sql_query("ingest/duplicate_ids"))
    if con.execute("select count(*) from ingest_duplicate_ids").fetchone()[0]:
        con.execute(sql_query("ingest/mark_duplicates"))
    rows_in, rejected, inserted, updated, unchanged = con.execute(sql_query("ingest/count_changes")).fetchone()
    now = datetime.now(UTC).replace(tzinfo=None)
    if rejected:
        con.execute(sql_query("ingest/insert_rejected"), {"load_id": load_id, "now": now})
    if updated:
        con.execute(sql_query("ingest/delete_changed"))
    if inserted or updated:
        con.execute(sql_query("ingest/insert_customers"), {"load_id": load_id, "now": now})
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
