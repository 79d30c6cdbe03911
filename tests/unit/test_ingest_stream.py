"""The streaming CSV reader: its short cuts give exactly what the full rules give, in blocks of any size.

The reader hands plain rows (digits, Male/Female) to validation with a flag that
skips the text rules and does not keep their raw text; every other line goes
through Python's csv module. These tests load the same rows through the CSV
path (tiny blocks, so every line break, quote and block boundary is crossed) and
as a table without the flag (the full rules, as a database source gets them),
and compare everything the load writes.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from mallscore.csvsource import csv_chunks
from mallscore.ingest import COLUMNS, ingest_csv, load_chunks

H = "CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)"

# (line as written, fields as the csv module reads them); None for a blank line
LINES = [
    "1,Male,30,50,40",
    "2,Female,41,70,",
    "3,Female,12,0,1",
    "4,Male,120,999999999,100",
    "5,Male,11,50,40",  # plain, age below range
    "6,Male,121,50,40",  # plain, age above range
    "7,Female,30,50,0",  # plain, score below range
    "8,Female,30,50,101",  # plain, score above range
    "9,Male,30,50,40",
    "9,Female,31,60,",  # plain duplicate of 9: both rejected, raw text printed back exactly
    "010,Male,30,50,40",  # leading zero: not plain, kept as written
    "10,Male,30,50,40",  # duplicate of 010
    "11,male,30,50,40",
    "12,F,30,50.5,40",
    "13,Male,030,50,40",
    "",
    "   ",
    "14,Male,30,50",
    "15,Male,30,50,40,extra",
    '16,"Fe""male",30,50,40',
    '17,"Female",30,50,"4',  # a quoted field across two lines
    '2"',
    "18,Male,30,50,40",
    " 19 ,Male,30,50,40",
    "20,Male,30,50,040",
    "21,Other,30,50,40",
    "22,Female,0,50,40",
    "23,Male,30,0050,40",
    "24,Female,30,1e3,",
    "1234567890123456789,Male,30,50,40",
    "123456789012345678,Male,30,50,40",
]


def _text() -> str:
    return H + "\n" + "\n".join(LINES) + "\n"


def _written(con):
    rejected = con.execute(
        "select line_no, reason, raw_values, customer_id from rejected_rows where load_id is not null order by line_no"
    ).fetchall()
    customers = con.execute(
        "select customer_id, gender, age, annual_income, spending_score from raw_customers order by 1"
    ).fetchall()
    counts = con.execute(
        "select rows_in_file, loaded, rejected, inserted, updated, unchanged from ingest_loads"
    ).fetchall()
    return rejected, customers, counts


def _reader_table(path, block_bytes: int | None = None) -> pa.Table:
    """Every row the CSV reader yields (its filler rows, line 0, left out)."""
    import pyarrow.compute as pc

    batches = csv_chunks(path) if block_bytes is None else csv_chunks(path, block_bytes=block_bytes)
    return pa.Table.from_batches([b.filter(pc.greater(b.column("line_no"), 0)) for b in batches])


def _full_rules_table(path) -> pa.Table:
    """The same rows as the CSV reader yields them, without the plain flag: the full rules apply."""
    table = _reader_table(path)
    return table.select(["line_no", *COLUMNS, "problem"])


@pytest.mark.parametrize("block_bytes", [16, 97, 1 << 20])
def test_short_cuts_match_the_full_rules(tmp_path, settings, block_bytes):
    from mallscore.warehouse import build, connect

    path = tmp_path / "c.csv"
    path.write_text(_text())
    fast_con = connect(tmp_path / "fast.duckdb")
    full_con = connect(tmp_path / "full.duckdb")
    try:
        build(fast_con)
        build(full_con)
        fast = load_chunks(fast_con, csv_chunks(path, block_bytes=block_bytes), source="csv")
        full_table = _full_rules_table(path)
        full = load_chunks(full_con, [full_table], source="csv")
        assert (fast.rows_in_file, fast.loaded, fast.rejected) == (full.rows_in_file, full.loaded, full.rejected)
        assert _written(fast_con) == _written(full_con)
        rejected, customers, _ = _written(fast_con)
    finally:
        fast_con.close()
        full_con.close()
    by_line = {line: (reason, json.loads(raw)) for line, reason, raw, _ in rejected}
    # line numbers are physical lines: the header is line 1, blank lines count, a quoted field spans two
    assert by_line[11][1]["customer_id"] == "9" and by_line[11][1] == {
        "customer_id": "9",
        "gender": "Female",
        "age": "31",
        "annual_income": "60",
        "spending_score": "",
    }
    assert "appears on more than one line" in by_line[10][0] and by_line[10][1]["annual_income"] == "50"
    assert by_line[12][1]["customer_id"] == "010" and "appears on more than one line" in by_line[13][0]
    assert "outside 12..120" in by_line[6][0] and by_line[6][1]["age"] == "11"
    assert "line has 4 fields" in by_line[19][0] and "line has 6 fields" in by_line[20][0]
    assert "is not a number" in by_line[22][0] and 23 not in by_line  # the quoted field over lines 22-23: one row
    assert by_line[22][1]["spending_score"] == "4\n2"
    assert "is not one of Male" in by_line[27][0]
    assert fast.rows_in_file == len([line for line in LINES if line.strip()]) - 1  # one row spans two lines
    ids = [c[0] for c in customers]
    assert 18 in ids and 19 in ids and 123456789012345678 in ids and 16 not in ids and 17 not in ids
    assert by_line[21][1]["gender"] == 'Fe"male'


def test_counts_stored_in_ingest_loads_are_the_counted_rows_of_the_file(con, tmp_path):
    lines = [f"{i},{'Male' if i % 2 else 'Female'},{20 + i % 50},{i % 90},{1 + i % 100}" for i in range(1, 3001)]
    lines[10] = "11,Nobody,30,50,40"
    lines[21] = lines[21].replace("22,", "21,", 1)  # id 21 on two lines
    lines[30] = ""
    path = tmp_path / "c.csv"
    path.write_text(H + "\r\n" + "\r\n".join(lines) + "\r\n")
    result = ingest_csv(con, path)
    # a clean-room count of the file, with Python only
    rows = [line for line in path.read_text().splitlines()[1:] if line.strip()]
    ids = [line.split(",")[0] for line in rows]
    bad = sum(1 for line in rows if "Nobody" in line) + sum(1 for i in ids if ids.count(i) > 1)
    stored = con.execute(
        "select rows_in_file, loaded, rejected, inserted, updated, unchanged from ingest_loads where load_id = ?",
        [result.load_id],
    ).fetchone()
    assert stored == (len(rows), len(rows) - bad, bad, len(rows) - bad, 0, 0)
    assert con.execute("select count(*) from raw_customers").fetchone()[0] == len(rows) - bad
    assert con.execute("select count(*) from rejected_rows where load_id = ?", [result.load_id]).fetchone()[0] == bad
    lines_of_rejects = [r[0] for r in con.execute("select line_no from rejected_rows order by 1").fetchall()]
    assert lines_of_rejects == [12, 22, 23]  # physical line numbers: the header is line 1


def test_the_reader_streams_in_blocks_and_needs_no_python_loop_for_plain_rows(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(H + "\n" + "".join(f"{i},Female,30,50,\n" for i in range(1, 20001)))
    batches = list(csv_chunks(path, block_bytes=4096))
    assert len(batches) > 50  # many blocks, never the whole file at once
    rows = sum(int(pa.compute.sum(pa.compute.greater(b.column("line_no"), 0)).as_py()) for b in batches)
    assert rows == 20000
    assert all(b.column("plain").to_pylist()[0::2] == [True] * (b.num_rows // 2) for b in batches)


def test_invalid_utf8_past_the_head_reloads_the_whole_file_as_latin1(con, tmp_path):
    rows = "".join(f"{i},Male,30,50,40\n" for i in range(1, 5001)).encode()  # > 64 KiB of ASCII first
    assert len(rows) > 65536
    path = tmp_path / "c.csv"
    path.write_bytes(
        (H + ",Name\n").encode() + rows.replace(b"\n", b",x\n") + "5001,Female,30,50,,Jos\xe9\n".encode("latin-1")
    )
    result = ingest_csv(con, path)
    assert (result.rows_in_file, result.loaded, result.rejected) == (5001, 5001, 0)
    assert con.execute("select count(*) from ingest_loads").fetchone()[0] == 1  # the UTF-8 attempt left nothing


def test_classic_mac_line_endings_still_load(con, tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes((H + "\r1,Male,30,50,40\r2,Female,31,60,\r3,Robot,30,50,40\r").encode())
    result = ingest_csv(con, path)
    assert (result.rows_in_file, result.loaded, result.rejected) == (3, 2, 1)
    assert con.execute("select line_no from rejected_rows").fetchall() == [(4,)]


def _csv_module_rows(text: str, width: int = 5) -> list[tuple]:
    """(first physical line, the five fields) of every row, as Python's csv module reads ``text``: the reference."""
    import csv
    import io

    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    rows, last = [], reader.line_num
    for record in reader:
        start, last = last + 1, reader.line_num
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        rows.append((start, *(record[i] if i < len(record) else None for i in range(width))))
    return rows


def _reader_rows(path, block_bytes: int) -> list[tuple]:
    table = _reader_table(path, block_bytes)
    return sorted(zip(*(table.column(c).to_pylist() for c in ["line_no", *COLUMNS])))


QUOTED = [
    '1,"Male",30,50,40',  # quoted text: read in the block, as the csv module reads it
    '"2","Female","41","70",""',  # every field quoted, the score empty
    '3,"",30,50,40',  # an empty quoted gender
    '4,"Ma"le,30,50,40',  # text after a closing quote
    '5,"Fe""male",30,50,40',  # an escaped quote
    '6,"Male,x",30,50',  # a separator inside quotes (and one field short)
    '7, "Male",30,50,40',  # a space before the quote: the quote is text
    '9,"Male" ,30,50,40',  # a space after the closing quote
    '10,"Fe',  # a field over two lines
    'male",30,50,40',
    '11,"Male",30,50,40,"a, b"',  # an extra field with a separator inside its quotes
    '8,Male",30,50,40',  # a quote inside a field that does not start with one: text
    '9,5\'10",30,50,"x"',
    '13,"Female",30,50,"1',  # a field over three lines, the middle one shaped like a row
    "14,Male,30,50,40",
    '2"',
    '12,"Female",30,50,"7"',
]


@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("block_bytes", [16, 97, 1 << 20])
def test_quoted_fields_read_as_pythons_csv_module_reads_them(tmp_path, block_bytes, crlf):
    end = "\r\n" if crlf else "\n"
    text = H + end + end.join(QUOTED) + end
    path = tmp_path / "q.csv"
    path.write_bytes(text.encode())
    assert _reader_rows(path, block_bytes) == _csv_module_rows(text)


@pytest.mark.parametrize("seed", range(6))
def test_random_quoting_reads_as_pythons_csv_module_reads_it(tmp_path, seed):
    import random

    rng = random.Random(seed)

    def field(value: str) -> str:
        kind = rng.random()
        if kind < 0.5:
            return value
        if kind < 0.8:
            return f'"{value}"'
        return rng.choice([f'"{value}""x"', f' "{value}"', f'"{value},y"', f'{value}"', f'"{value}" ', '""', ""])

    lines = []
    for i in range(400):
        values = [str(i + 1), rng.choice(["Male", "Female", "male"]), str(rng.randint(5, 130)), "50", ""]
        values[4] = rng.choice(["", "40", "101"])
        lines.append(",".join(field(v) for v in (values + ["z"])[: rng.choice([4, 5, 5, 5, 6])]))
    text = H + "\n" + "\n".join(lines) + "\n"
    path = tmp_path / "r.csv"
    path.write_text(text)
    for block_bytes in (64, 1 << 20):
        assert _reader_rows(path, block_bytes) == _csv_module_rows(text)


def test_a_file_that_quotes_its_text_is_parsed_in_the_reader(tmp_path):
    """Many exports quote every text field ("Male"): those lines are parsed in numpy, not by the csv module
    line by line, so such a file loads at the plain speed (bench/bench_ingest.py)."""
    from mallscore.csvsource import PLAIN_SCHEMA, csv_split

    path = tmp_path / "q.csv"
    path.write_text(
        H + "\n" + "\n".join(f'{i},"{g}",30,50,40' for i, g in enumerate(["Male", "Female"] * 50, 1)) + "\n"
    )
    batches = list(csv_split(path))
    assert [b.schema.equals(PLAIN_SCHEMA) for b in batches] == [True] and batches[0].num_rows == 100
    assert batches[0].column("gender").to_pylist()[:2] == ["Male", "Female"]
