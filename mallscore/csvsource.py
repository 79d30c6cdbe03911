"""The CSV source of ingest: a customers file (or a pipe, spooled first) as a stream of raw-text Arrow batches.

The file is read in blocks of a few MiB: numpy finds the line breaks and the
separators, and each required column is handed to DuckDB as a zero-copy view
of the block (no Python loop over rows). A field in quotes that hold just its text
(``"Male"``, as many exports write every text field) is read there too, as the text
between them. Only lines that need real CSV parsing (an escaped quote, a separator
or line break inside quotes, text around quotes, blank lines, the wrong number of
fields) go through Python's ``csv`` module, one line at a time. Validation is not done here: every source hands
the same raw text to ``sql/ingest/validate_customers.sql`` (:mod:`mallscore.ingest`).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from mallscore.errors import BadInputError, InputMissingError
from mallscore.specs import AGE, SPENDING_SCORE

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
# Bytes of a CSV file read at once. Smaller blocks mean smaller temporaries per block: 1.5 MiB against
# 4 MiB (whole processes, 3-4 runs each): 10M rows 2.72 s and 236 MiB peak against 2.80 s and 309 MiB
# (growth from 1M 1.18x against 1.24x); 1M with 1% broken lines 1.61 s and 283 MiB against 1.73 s and
# 378 MiB; 10M unchanged over 10M loaded 4.10 s and 297 MiB against 4.08 s and 344 MiB. 1 MiB and 512 KiB
# were slower (10M: 2.84 s, 2.98 s) for a few MiB less.
BLOCK_BYTES = 3 << 19
STAGE_SCHEMA = pa.schema(
    [
        ("line_no", pa.int64()),
        *((name, pa.string()) for name in COLUMNS),
        ("problem", pa.string()),
        ("plain", pa.bool_()),  # every field in its plain form (see _plain_rows): validation takes a short cut
    ]
)
# Rows already parsed (see csv_split): plain and inside the ranges validation checks, so valid as they are.
PLAIN_SCHEMA = pa.schema(
    [
        ("line_no", pa.int64()),
        ("customer_id", pa.int64()),
        ("gender", pa.dictionary(pa.int8(), pa.string())),
        ("age", pa.int32()),
        ("annual_income", pa.float64()),
        ("spending_score", pa.int32()),
    ]
)
_GENDERS = pa.StringArray.from_buffers(2, pa.py_buffer(np.array([0, 6, 10], np.int32)), pa.py_buffer(b"FemaleMale"))


def _array(values: np.ndarray, kind: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """A numpy array as an Arrow array without a copy (``pa.array`` would import pandas: 0.2 s)."""
    bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    nulls = -1 if valid is not None else 0
    return pa.Array.from_buffers(kind, len(values), [bitmap, pa.py_buffer(values)], null_count=nulls)


def plain_ids(batch: pa.RecordBatch) -> np.ndarray:
    """The customer ids of a PLAIN_SCHEMA batch as a numpy view (no pandas import, no copy)."""
    column = batch.column("customer_id")
    return np.frombuffer(column.buffers()[1], np.int64)[column.offset : column.offset + len(column)]


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


class RetryLatin1(Exception):
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


def read_header(path: Path, encoding: str) -> _CsvLayout:
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
                raise RetryLatin1() from None
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


def _record_cut(buf: bytes, delimiter: str) -> int:
    """Bytes of ``buf`` (which starts a record) that end at a line break outside quotes (0: no such break yet)."""
    if b'"' not in buf:
        return buf.rfind(b"\n") + 1
    arr = np.frombuffer(buf, np.uint8)
    breaks = np.flatnonzero(arr == 10)
    quotes = _quoting_quotes(arr, np.flatnonzero(arr == 34), delimiter)
    if len(breaks) and np.searchsorted(quotes, breaks[-1]) % 2 == 0:  # usually the last break is outside
        return int(breaks[-1]) + 1
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
            cut = _record_cut(buf, layout.delimiter)
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
            raise RetryLatin1() from None
        yield block


def _interleaved(block: bytes, starts: np.ndarray, ends: np.ndarray) -> pa.StringArray:
    """Strings block[starts[i]:ends[i]] at even positions, the bytes between them at odd ones; no copy."""
    k = len(starts)
    offsets = np.empty(2 * k + 1, np.int32)
    offsets[0 : 2 * k : 2] = starts
    offsets[1 : 2 * k : 2] = ends
    offsets[2 * k] = ends[-1]
    return pa.StringArray.from_buffers(2 * k, pa.py_buffer(offsets), pa.py_buffer(block))


def _block_batches(
    block: bytes, first_line: int, layout: _CsvLayout, split: bool = False
) -> tuple[list[pa.RecordBatch], int]:
    """Arrow batches (STAGE_SCHEMA) of the rows in one block, and the number of lines it held.

    ``split``: rows that are plain and inside the ranges come as one PLAIN_SCHEMA batch
    (parsed here), every other row as before.
    """
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
    quoted = bool(len(quotes))
    if not inner_returns and len(seps) == n * w1:
        # the usual block: every line has exactly width - 1 separators, and no quotes but around whole fields
        grid = seps.reshape(n, w1)
        if (
            (grid[:, 0] >= starts).all()
            and (grid[:, -1] < ends).all()
            and (not quoted or _quotes_only_around_fields(arr, len(quotes), starts, ends, grid))
        ):
            counted = None
            if layout.width == len(COLUMNS) and not split and not quoted:  # count non-digits per line at once
                nondigits = ((arr - np.uint8(48)) > 9).view(np.uint8)
                counted = (np.add.reduceat(nondigits, starts, dtype=np.int32), w1 + 1 + cr_end)
            rows = np.arange(n)
            if split:
                return _split_rows(block, rows, starts, ends, grid, first_line, layout, quoted), n
            return [_fast_rows(block, rows, starts, ends, grid, first_line, layout, counted, quoted=quoted)], n
    first_sep = np.searchsorted(seps, starts)
    regular = np.searchsorted(seps, ends) - first_sep == w1
    if quoted:
        regular &= _unquoted_or_simply_quoted(arr, quotes, seps, starts, ends, layout.delimiter)
        # a line break outside quotes ends a record (quotes that are text do not count)
        record_ends = np.searchsorted(_quoting_quotes(arr, quotes, layout.delimiter), breaks) % 2 == 0
        regular &= record_ends & np.r_[True, record_ends[:-1]]  # not a line of a record that spans lines
    if inner_returns:
        regular &= np.searchsorted(returns, ends) == np.searchsorted(returns, starts)
    batches = []
    rows = np.flatnonzero(regular)
    if len(rows):
        grid = seps[first_sep[rows][:, None] + np.arange(w1)]
        if split:
            batches.extend(_split_rows(block, rows, starts[rows], ends[rows], grid, first_line, layout, quoted))
        else:
            batches.append(_fast_rows(block, rows, starts[rows], ends[rows], grid, first_line, layout, quoted=quoted))
    others = np.flatnonzero(~regular)
    if len(others):
        batches.append(_parsed_rows(block, others, starts, ends, record_ends, first_line, layout))
    return batches, n


def _quotes_only_around_fields(
    arr: np.ndarray, quotes: int, starts: np.ndarray, ends: np.ndarray, grid: np.ndarray
) -> bool:
    """Whether a block's ``quotes`` quote bytes are exactly the first and last bytes of some of its fields
    (``grid``: every line's separators): then every line is simply quoted (``_unquoted_or_simply_quoted``),
    found with no search per quote. Each such field holds two of the quotes, so when they account for all
    of them no quote is left inside any field."""
    n, w1 = grid.shape
    field_starts = np.empty((n, w1 + 1), np.int64)
    field_ends = np.empty((n, w1 + 1), np.int64)
    field_starts[:, 0], field_starts[:, 1:] = starts, grid + 1
    field_ends[:, :-1], field_ends[:, -1] = grid, ends
    field_starts, field_ends = field_starts.ravel(), field_ends.ravel()
    wrapped = field_ends - field_starts >= 2
    wrapped &= arr.take(field_starts, mode="clip") == 34
    wrapped &= arr.take(field_ends - 1, mode="clip") == 34
    return 2 * int(np.count_nonzero(wrapped)) == quotes


def _unquoted_or_simply_quoted(
    arr: np.ndarray, quotes: np.ndarray, seps: np.ndarray, starts: np.ndarray, ends: np.ndarray, delimiter: str
) -> np.ndarray:
    """Lines without quotes, or whose quotes only enclose whole fields: ``"Male"``, never ``"a""b"``,
    ``"a,b"``, `` "a"`` or a field spanning lines. Python's csv module reads such a field as the text
    between its quotes, which the block parsers then take (``_field_bounds`` with ``quoted``)."""
    n = len(starts)
    line = np.searchsorted(ends, quotes)  # the line of each quote (its end is at or after the quote)
    inside = (line < n) & (quotes >= starts[np.minimum(line, n - 1)])  # not in a line break
    line = np.minimum(line, n - 1)
    first = np.searchsorted(quotes, starts)
    opening = (np.arange(len(quotes)) - first[line]) % 2 == 0  # 1st, 3rd, ... quote of its line
    sep = np.uint8(ord(delimiter))
    last = len(arr) - 1
    at_start = (quotes == starts[line]) | (arr[np.maximum(quotes - 1, 0)] == sep)
    at_end = (quotes + 1 == ends[line]) | (arr[np.minimum(quotes + 1, last)] == sep)
    good = inside & np.where(opening, at_start, at_end)
    closing = np.minimum(np.arange(len(quotes)) + 1, len(quotes) - 1)  # an opening quote's partner
    good &= ~opening | (
        (line[closing] == line) & (np.searchsorted(seps, quotes[closing]) == np.searchsorted(seps, quotes))
    )
    count = np.bincount(line, minlength=n)
    bad = np.bincount(line, weights=~good, minlength=n) > 0
    return (count == 0) | ((count % 2 == 0) & ~bad)


def _quoting_quotes(arr: np.ndarray, quotes: np.ndarray, delimiter: str) -> np.ndarray:
    """The quotes of a block (which starts a record) that quote, as Python's csv module reads them: one that
    opens a field at its start, the one that closes it, both of a doubled quote inside. A quote inside a
    field that does not start with one is text (``5'10"``) and does not count.

    Usually every quote quotes: then every other one, from the first, opens a field or doubles the quote
    before it, which numpy checks at once. Otherwise a loop over the block's quotes decides.
    """
    sep = ord(delimiter)
    opening = quotes[0::2]
    before = arr[np.maximum(opening - 1, 0)]
    if ((opening == 0) | (before == sep) | (before == 10) | (before == 13) | (before == 34)).all():
        return quotes
    size = len(arr)
    quoting = np.zeros(len(quotes), bool)
    inside = doubled = False
    for k, q in enumerate(quotes.tolist()):
        if doubled:  # the second quote of a doubled one
            quoting[k], doubled = True, False
        elif inside:
            quoting[k] = True
            if q + 1 < size and arr[q + 1] == 34:
                doubled = True
            else:
                inside = False
        elif q == 0 or arr[q - 1] in (sep, 10, 13):  # at the start of a field: it opens a quoted field
            quoting[k] = inside = True
    return quotes[quoting]


def _field_bounds(
    rows: np.ndarray,
    row_starts: np.ndarray,
    row_ends: np.ndarray,
    grid: np.ndarray,
    layout: _CsvLayout,
    arr: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(starts, ends) of each required field of the given rows, in COLUMNS order.

    ``arr`` (the block, when it has quotes; its lines here are unquoted or simply quoted): a field
    that starts with a quote ends with its partner, and its bounds are the text between them.
    """
    bounds = []
    for pos in layout.positions:
        field_starts = row_starts if pos == 0 else grid[:, pos - 1] + 1
        field_ends = row_ends if pos == layout.width - 1 else grid[:, pos]
        if arr is not None:
            quoted = (field_ends - field_starts >= 2) & (arr.take(field_starts, mode="clip") == 34)
            field_starts, field_ends = field_starts + quoted, field_ends - quoted
        bounds.append((field_starts, field_ends))
    return bounds


def _digits_value(arr: np.ndarray, bound: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Fields read as numbers: (their int64 values, whether every byte is a digit), for fields of
    0-18 bytes (an empty field is 0; a longer field's value is garbage)."""
    starts, ends = bound
    sizes = ends - starts
    width = min(int(sizes.max()) if len(sizes) else 0, 18)
    value = np.zeros(len(starts), np.int32 if width <= 9 else np.int64)
    nondigit = np.zeros(len(starts), bool)
    for j in range(width, 0, -1):  # the j-th byte from the right, or 0 where the field is shorter
        digit = arr.take(ends - j, mode="clip") - np.uint8(48)  # a non-digit wraps above 9
        digit *= sizes >= j
        nondigit |= digit > 9
        value *= 10
        value += digit
    return value.astype(np.int64), ~nondigit


def _split_rows(
    block: bytes,
    rows: np.ndarray,
    row_starts: np.ndarray,
    row_ends: np.ndarray,
    grid: np.ndarray,
    first_line: int,
    layout: _CsvLayout,
    quoted: bool = False,
) -> list[pa.RecordBatch]:
    """Regular rows split in two: those validation would accept as they are, parsed here into one
    PLAIN_SCHEMA batch, and the rest as raw text (``_fast_rows``), for the full rules.

    Accepted as they are: plain (see ``_plain_rows``) with the age and a given score
    inside the ranges of :mod:`mallscore.specs`, the same ranges validation applies.
    """
    arr = np.frombuffer(block, np.uint8)
    bounds = _field_bounds(rows, row_starts, row_ends, grid, layout, arr if quoted else None)
    (customer_id, id_ok), (age, age_ok), (income, income_ok), (score, score_ok) = (
        _digits_value(arr, bounds[i]) for i in (0, 2, 3, 4)
    )
    plain = _plain_rows(arr, bounds, digits=id_ok & age_ok & income_ok & score_ok)
    has_score = bounds[4][1] > bounds[4][0]
    sure = plain & (age >= AGE.min) & (age <= AGE.max)
    sure &= ~has_score | ((score >= SPENDING_SCORE.min) & (score <= SPENDING_SCORE.max))
    batches = []
    if sure.any():
        male = (bounds[1][1] - bounds[1][0]) == 4  # a plain gender is Male or Female
        pick = np.flatnonzero(sure) if not sure.all() else slice(None)
        batches.append(
            pa.RecordBatch.from_arrays(
                [
                    _array((first_line + rows[pick]).astype(np.int64), pa.int64()),
                    _array(np.ascontiguousarray(customer_id[pick]), pa.int64()),
                    pa.DictionaryArray.from_arrays(_array(male[pick].view(np.int8), pa.int8()), _GENDERS),
                    _array(age[pick].astype(np.int32), pa.int32()),
                    _array(income[pick].astype(np.float64), pa.float64()),
                    _array(score[pick].astype(np.int32), pa.int32(), valid=has_score[pick]),
                ],
                schema=PLAIN_SCHEMA,
            )
        )
    if not sure.all():
        other = np.flatnonzero(~sure)
        batches.append(
            _fast_rows(
                block, rows[other], row_starts[other], row_ends[other], grid[other], first_line, layout, quoted=quoted
            )
        )
    return batches


def _fast_rows(
    block: bytes,
    rows: np.ndarray,
    row_starts: np.ndarray,
    row_ends: np.ndarray,
    grid: np.ndarray,
    first_line: int,
    layout: _CsvLayout,
    counted: tuple[np.ndarray, np.ndarray] | None = None,
    quoted: bool = False,
) -> pa.RecordBatch:
    """Rows whose lines have exactly the header's number of fields, unquoted or simply quoted (``quoted``:
    the block has quotes): zero-copy column views.

    ``counted``: the non-digit bytes of each whole line and how many of them are not
    the gender's (separators, line break), when every line of the block is a row.
    """
    k = len(rows)
    arr = np.frombuffer(block, np.uint8) if quoted else None
    bounds = _field_bounds(rows, row_starts, row_ends, grid, layout, arr)
    columns = [_interleaved(block, field_starts, field_ends) for field_starts, field_ends in bounds]
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
    *,
    digits: np.ndarray | None = None,
) -> np.ndarray:
    """Rows whose fields are all in their plain form, which validation reads with plain casts.

    Plain: the id 1-18 digits, gender exactly Male or Female, age 1-3 digits, income 1-9
    digits, the score empty or 1-3 digits, no number with a leading zero (so the text is
    exactly what the parsed value prints as, and need not be kept for a rejected row).
    Everything else takes the full rules; a plain row still gets the range rules.
    ``digits``: whether each row's number fields are all digits, when the caller knows.
    """
    last = len(arr) - 1
    (id_b, gender_b, age_b, income_b, score_b) = bounds
    if digits is None and line_nondigits is None:  # count the non-digit bytes of each number field
        nondigits = np.zeros(len(arr) + 1, np.int32)
        np.cumsum((arr - np.uint8(48)) > 9, dtype=np.int32, out=nondigits[1:])
        digits = np.ones(len(id_b[0]), bool)
        for field_starts, field_ends in (id_b, age_b, income_b, score_b):
            digits &= nondigits[field_ends] == nondigits[field_starts]
    elif digits is None:  # the line's only non-digits are its separators, the gender and the line break
        digits = line_nondigits == line_extra + (gender_b[1] - gender_b[0])
    # else: the caller read the number fields' bytes already (``digits``)

    def number(bound: tuple[np.ndarray, np.ndarray], most: int, empty_ok: bool = False) -> np.ndarray:
        starts, ends = bound
        size = ends - starts
        ok = (size >= 1) & (size <= most)
        ok &= (size == 1) | (arr[np.minimum(starts, last)] != 48)
        return ok | (size == 0) if empty_ok else ok

    # the four bytes at every offset as one little-endian number: a word is compared in one or two reads
    quads = np.ndarray((max(len(arr) - 3, 0),), "<u4", buffer=arr, strides=(1,))

    def quad(at: np.ndarray, text: bytes) -> np.ndarray:
        return quads.take(at, mode="clip") == int.from_bytes(text.ljust(4, b"\0")[:4], "little")

    g_starts, g_ends = gender_b
    g_size = g_ends - g_starts
    if len(quads):
        male = (g_size == 4) & quad(g_starts, b"Male")
        female = (g_size == 6) & quad(g_starts, b"Fema") & quad(g_starts + 2, b"male")
    else:  # a block of three bytes or fewer holds no gender
        male = female = np.zeros(len(g_starts), bool)

    return (
        (male | female)
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


def csv_batches(layout: _CsvLayout, block_bytes: int, split: bool = False) -> Iterator[pa.RecordBatch]:
    csv.field_size_limit(sys.maxsize)
    line = layout.first_line
    for block in _utf8_blocks(layout, block_bytes):
        batches, lines = _block_batches(block, line, layout, split)
        yield from batches
        line += lines


def csv_layout(path: Path) -> _CsvLayout:
    """Sniff and read the header: raises the whole-file errors (missing, empty, binary, JSON, header)."""
    path = Path(path)
    encoding = _sniff_encoding_and_shape(path)
    try:
        return read_header(path, encoding)
    except RetryLatin1:
        return read_header(path, "latin-1")


def csv_split(path: Path, block_bytes: int = BLOCK_BYTES) -> Iterator[pa.RecordBatch]:
    """``csv_chunks``, with the rows validation would accept as they are already parsed (PLAIN_SCHEMA batches).

    Every other row comes as raw text (STAGE_SCHEMA), in file order. Whole-file
    errors are raised at once, before the first batch is asked for.
    """
    return csv_batches(csv_layout(path), block_bytes, split=True)


def csv_chunks(path: Path, block_bytes: int = BLOCK_BYTES) -> Iterator[pa.RecordBatch]:
    """Raw text rows of a customers CSV as Arrow batches (``line_no`` + COLUMNS + ``problem``).

    Blank lines are skipped (they are not rows). A row with the wrong number of
    fields keeps its text and is rejected by validation with a reason. Batches
    of the fast path carry filler rows (``line_no`` 0) that validation drops.
    Raises the whole-file errors (missing, empty, binary, JSON, header) at once,
    before the first batch is asked for.
    """
    return csv_batches(csv_layout(path), block_bytes)
