"""Load customers into ``raw_customers`` without ever losing or silently dropping a row.

Sources (a CSV file here; a database query elsewhere) only produce raw text rows
with their line numbers. One SQL query (``sql/ingest/validate_customers.sql``)
validates them all, so every source shares the same rules. Valid rows are
upserted (the newest load wins, identical rows change nothing); every other row
goes to ``rejected_rows`` with a reason. ``rows in = loaded + rejected`` always.
"""

from __future__ import annotations

import codecs
import csv
import re
import secrets
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from mallscore.errors import BadInputError, InputMissingError
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
CHUNK_ROWS = 50_000
RAW_VALUE_LIMIT = 200


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
        return "utf-8-sig"
    except UnicodeDecodeError:
        return "latin-1"


def _pick_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def csv_chunks(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    """Raw text rows of a customers CSV as Arrow chunks (``line_no`` + COLUMNS).

    Blank lines are skipped (they are not rows). A row with the wrong number of
    fields keeps its text and is rejected by validation with a reason.
    """
    encoding = _sniff_encoding_and_shape(path)
    try:
        yield from _read_csv(path, encoding, chunk_rows)
    except UnicodeDecodeError:
        if encoding == "latin-1":  # pragma: no cover - latin-1 decodes every byte
            raise
        raise _RetryLatin1() from None


class _RetryLatin1(Exception):
    """Raised when a UTF-8 file turns out to contain invalid bytes past its head."""


def _read_csv(path: Path, encoding: str, chunk_rows: int) -> Iterator[pa.Table]:
    csv.field_size_limit(sys.maxsize)
    with path.open("r", encoding=encoding, newline="") as handle:
        first = handle.readline()
        while first and not first.strip():
            first = handle.readline()
        if not first:
            raise BadInputError(f"{path}: the file is empty; expected a CSV header and rows")
        delimiter = _pick_delimiter(first)
        header = next(csv.reader([first], delimiter=delimiter))
        positions = map_header(header, str(path))
        width = len(header)
        reader = csv.reader(handle, delimiter=delimiter)
        columns: dict[str, list] = {name: [] for name in ("line_no", *COLUMNS, "problem")}
        line_no = 1
        try:
            for record in reader:
                start = line_no + 1
                line_no = reader.line_num + 1  # the header line was read outside the reader
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue
                columns["line_no"].append(start)
                for name, pos in zip(COLUMNS, positions):
                    columns[name].append(record[pos] if pos < len(record) else None)
                columns["problem"].append(
                    None if len(record) == width else f"line has {len(record)} fields, the header has {width}"
                )
                if len(columns["line_no"]) >= chunk_rows:
                    yield _to_arrow(columns)
                    columns = {name: [] for name in columns}
        except csv.Error as exc:
            raise BadInputError(f"{path}: not a readable CSV near line {line_no + 1} ({exc})") from None
        if columns["line_no"]:
            yield _to_arrow(columns)


def _to_arrow(columns: dict[str, list]) -> pa.Table:
    return pa.table(
        {
            "line_no": pa.array(columns["line_no"], pa.int64()),
            **{name: pa.array(columns[name], pa.string()) for name in (*COLUMNS, "problem")},
        }
    )


# --- loading -------------------------------------------------------------------------

_STAGE = """
create or replace temp table incoming_customers (
    line_no bigint, customer_id varchar, gender varchar, age varchar,
    annual_income varchar, spending_score varchar, problem varchar
)
"""


def _stage(con: duckdb.DuckDBPyConnection, chunks: Iterable[pa.Table]) -> None:
    con.execute(_STAGE)
    for chunk in chunks:
        con.register("incoming_chunk", chunk)
        try:
            con.execute("insert into incoming_customers by name select * from incoming_chunk")
        finally:
            con.unregister("incoming_chunk")


def load_chunks(
    con: duckdb.DuckDBPyConnection, chunks: Iterable[pa.Table], source: str, load_id: str | None = None
) -> LoadResult:
    """Validate and upsert raw rows from any source, all in one transaction."""
    load_id = load_id or new_load_id()
    con.begin()
    try:
        _stage(con, chunks)
        result = _validate_and_upsert(con, load_id, source)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    finally:
        con.execute("drop table if exists temp.incoming_customers")
        con.execute("drop table if exists temp.validated_customers")
    return result


def ingest_csv(con: duckdb.DuckDBPyConnection, path: Path) -> LoadResult:
    """Load one customers CSV file (see module docstring for the rules)."""
    path = Path(path)
    try:
        return load_chunks(con, csv_chunks(path), source=f"csv:{path.name}")
    except _RetryLatin1:
        return load_chunks(con, _read_csv(path, "latin-1", CHUNK_ROWS), source=f"csv:{path.name}")


def _validate_and_upsert(con: duckdb.DuckDBPyConnection, load_id: str, source: str) -> LoadResult:
    validate = sql_query("ingest/validate_customers")
    con.execute(
        f"""
        create or replace temp table validated_customers as
        with v as ({validate})
        select v.* replace (coalesce(i.problem, v.reason) as reason)
        from v join incoming_customers i using (line_no)
        """
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    rows_in, rejected = con.execute(
        "select count(*), count(*) filter (where reason is not null) from validated_customers"
    ).fetchall()[0]
    con.execute(
        """
        insert into rejected_rows
        select $load_id, null, line_no,
               left(raw_customer_id, 200),
               to_json({customer_id: left(raw_customer_id, 200), gender: left(raw_gender, 200),
                        age: left(raw_age, 200), annual_income: left(raw_annual_income, 200),
                        spending_score: left(raw_spending_score, 200)}),
               reason, $now
        from validated_customers where reason is not null
        order by line_no
        """,
        {"load_id": load_id, "now": now},
    )
    inserted, updated, unchanged = con.execute(
        """
        select
            count(*) filter (where r.customer_id is null),
            count(*) filter (where r.customer_id is not null and (r.gender, r.age, r.annual_income, r.spending_score)
                               is distinct from (v.gender, v.age, v.annual_income, v.spending_score)),
            count(*) filter (where r.customer_id is not null and (r.gender, r.age, r.annual_income, r.spending_score)
                               is not distinct from (v.gender, v.age, v.annual_income, v.spending_score))
        from validated_customers v left join raw_customers r using (customer_id)
        where v.reason is null
        """
    ).fetchall()[0]
    con.execute(
        """
        delete from raw_customers r using validated_customers v
        where v.reason is null and r.customer_id = v.customer_id
          and (r.gender, r.age, r.annual_income, r.spending_score)
              is distinct from (v.gender, v.age, v.annual_income, v.spending_score)
        """
    )
    con.execute(
        """
        insert into raw_customers
        select v.customer_id, v.gender, v.age, v.annual_income, v.spending_score, $load_id, $now
        from validated_customers v anti join raw_customers r using (customer_id)
        where v.reason is null
        """,
        {"load_id": load_id, "now": now},
    )
    loaded = rows_in - rejected
    con.execute(
        "insert into ingest_loads values ($load_id, $source, $now, $now, $rows, $loaded, $rejected, $ins, $upd, $unch)",
        {
            "load_id": load_id,
            "source": source,
            "now": now,
            "rows": rows_in,
            "loaded": loaded,
            "rejected": rejected,
            "ins": inserted,
            "upd": updated,
            "unch": unchanged,
        },
    )
    return LoadResult(
        load_id, int(rows_in), int(loaded), int(rejected), int(inserted), int(updated), int(unchanged), source
    )
