"""Arrow record batches as PostgreSQL binary ``COPY`` data, built without a Python loop over rows.

PostgreSQL parses binary COPY about 2.5x faster than CSV (no float or
timestamp text to parse). Each row of the binary format is a 16-bit field
count, then per field a 32-bit length and the value in network byte order.
COPY accepts the columns in any order we name, so every row is laid out as
its fixed-width fields first (one packed numpy record per row) followed by its
text fields; pyarrow's element-wise binary join then glues the parts of all
rows together in C++.

Supported: int64/int32 -> bigint/integer, float64 -> double precision,
bool -> boolean, timestamp without time zone -> timestamp, string -> text;
NULLs in text columns only (length -1). :func:`encodable` says whether a batch qualifies; :func:`copy_in`
streams batches into a table, in CSV when they do not qualify.
"""

from __future__ import annotations

import io
import itertools
import struct
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970-01-01

_FIXED = {
    pa.int64(): ">i8",
    pa.int32(): ">i4",
    pa.float64(): ">f8",
    pa.bool_(): "u1",
}


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_fixed(t: pa.DataType) -> bool:
    return t in _FIXED or (pa.types.is_timestamp(t) and t.tz is None)


def encodable(schema: pa.Schema) -> bool:
    """True when every column has a type this module can encode."""
    return all(_is_fixed(f.type) or _is_text(f.type) for f in schema)


def column_order(schema: pa.Schema) -> list[str]:
    """The column order of the encoded rows: fixed-width columns first, then text (name it in COPY)."""
    fixed = [f.name for f in schema if _is_fixed(f.type)]
    return fixed + [f.name for f in schema if _is_text(f.type)]


def _fixed_values(array: pa.Array) -> tuple[np.ndarray, str]:
    t = array.type
    if pa.types.is_timestamp(t):
        micros = pc.cast(array, pa.timestamp("us")) if t.unit != "us" else array
        values = micros.cast(pa.int64()).to_numpy(zero_copy_only=False) - _PG_EPOCH_US
        return values, ">i8"
    if t == pa.bool_():
        return array.to_numpy(zero_copy_only=False).astype(np.uint8), "u1"
    return array.to_numpy(zero_copy_only=False), _FIXED[t]


def fixed_nulls(batch: pa.RecordBatch) -> bool:
    """True when a fixed-width column holds a NULL (text columns encode NULL as length -1)."""
    return any(column.null_count for column, field in zip(batch.columns, batch.schema) if _is_fixed(field.type))


def encode_batch(batch: pa.RecordBatch) -> bytes | memoryview:
    """The rows of ``batch`` in binary COPY format (no header/trailer), columns in :func:`column_order`."""
    if fixed_nulls(batch):
        raise ValueError("binary COPY encoding does not handle NULLs in fixed-width columns")
    n = batch.num_rows
    names = column_order(batch.schema)
    fixed = [name for name in names if _is_fixed(batch.schema.field(name).type)]
    texts = [name for name in names if name not in fixed]
    fields = [("count", ">i2")]
    values = {}
    for name in fixed:
        data, code = _fixed_values(batch.column(name))
        fields += [(f"{name}__len", ">i4"), (name, code)]
        values[name] = data
    record = np.empty(n, dtype=np.dtype(fields))  # packed: numpy adds no padding to this dtype
    record["count"] = len(names)
    for name in fixed:
        record[f"{name}__len"] = np.dtype(record.dtype[name]).itemsize
        record[name] = values[name]
    width = record.dtype.itemsize
    parts: list[pa.Array] = [
        pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(record.tobytes())]).cast(
            pa.binary()
        )
    ]
    for name in texts:
        raw = batch.column(name)
        column = (pc.fill_null(raw, "") if raw.null_count else raw).cast(pa.binary())
        lengths = pc.binary_length(column).to_numpy(zero_copy_only=False).astype(">i4")
        if raw.null_count:  # a NULL field is the length -1 and no bytes
            lengths[~raw.is_valid().to_numpy(zero_copy_only=False)] = -1
        parts.append(
            pa.FixedSizeBinaryArray.from_buffers(pa.binary(4), n, [None, pa.py_buffer(lengths.tobytes())]).cast(
                pa.binary()
            )
        )
        parts.append(column)
    rows = pc.binary_join_element_wise(*parts, b"") if len(parts) > 1 else parts[0]
    if isinstance(rows, pa.ChunkedArray):  # pragma: no cover - compute on arrays returns arrays
        rows = rows.combine_chunks()
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32, count=n + 1, offset=rows.offset * 4)
    return memoryview(rows.buffers()[2])[offsets[0] : offsets[-1]]


def copy_in(
    cur, table, batches: Iterator[pa.RecordBatch], on_batch: Callable[[int], None] | None, *, binary: bool = True
) -> int:
    """COPY Arrow batches into ``table``: binary format when asked and every column encodes, else CSV; returns rows."""
    import pyarrow.csv as pacsv
    from psycopg import sql
    from psycopg.copy import QueuedLibpqWriter

    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        return 0
    binary = binary and encodable(first.schema)
    names = column_order(first.schema) if binary else first.schema.names
    statement = sql.SQL("copy {} ({}) from stdin (format {})").format(
        table, sql.SQL(", ").join(sql.Identifier(c) for c in names), sql.SQL("binary" if binary else "csv")
    )
    options = pacsv.WriteOptions(include_header=False)
    loaded = 0
    # the queued writer sends from a thread, so the server parses one batch while we encode the next
    with cur.copy(statement, writer=QueuedLibpqWriter(cur)) as copy:
        if binary:
            copy.write(HEADER)
        for batch in itertools.chain([first], batches):
            if binary and not fixed_nulls(batch):
                copy.write(encode_batch(batch))
            elif binary:
                raise ValueError("NULL in a NOT NULL segments column")
            else:
                buffer = io.BytesIO()
                pacsv.write_csv(batch, buffer, options)
                copy.write(buffer.getvalue())
            loaded += batch.num_rows
            if on_batch:
                on_batch(loaded)
        if binary:
            copy.write(TRAILER)
    return loaded


class CountingReader:
    """Arrow batches read back from COPY TO; counts the rows that pass through :meth:`reader`."""

    def __init__(self, source: pa.RecordBatchReader) -> None:
        self.source, self.rows = source, 0

    def _batches(self) -> Iterator[pa.RecordBatch]:
        for batch in self.source:
            self.rows += batch.num_rows
            yield batch

    def reader(self) -> pa.RecordBatchReader:
        """The batches as a RecordBatchReader (readable once)."""
        return pa.RecordBatchReader.from_batches(self.source.schema, self._batches())


@contextmanager
def copy_out(cur, select, schema: pa.Schema) -> Iterator[CountingReader]:
    """The rows of ``select`` read with ``COPY (...) TO STDOUT (FORMAT csv)`` as Arrow batches of ``schema``.

    The CSV is spooled to a temporary file (memory stays flat) and parsed by
    pyarrow. ISO dates and the shortest round-tripping text for doubles are
    asked for, so values read back exactly; NULL (unquoted empty) and the empty
    string (quoted) stay apart.
    """
    import pyarrow.csv as pacsv
    from psycopg import sql

    with tempfile.TemporaryFile() as spool:
        cur.execute("set local datestyle = 'ISO, YMD'")
        cur.execute("set local extra_float_digits = 1")
        with cur.copy(sql.SQL("copy ({}) to stdout (format csv)").format(select)) as copy:
            for chunk in copy:
                spool.write(chunk)
        if not spool.tell():  # an empty table: no CSV at all, which pyarrow refuses to read
            yield CountingReader(pa.RecordBatchReader.from_batches(schema, iter(())))
            return
        spool.seek(0)
        reader = pacsv.open_csv(
            spool,
            read_options=pacsv.ReadOptions(column_names=schema.names, block_size=1 << 24),
            convert_options=pacsv.ConvertOptions(
                column_types=schema,
                true_values=["t"],
                false_values=["f"],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        yield CountingReader(reader)
