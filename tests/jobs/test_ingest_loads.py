"""The counts `ingest` stores in `ingest_loads` are read back and match counts made independently of the loader."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from typer.testing import CliRunner

import mallscore.cli  # noqa: F401  (registers commands)
from mallscore.cli.app import app

runner = CliRunner()
HEADER = "CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)"
COUNTS = ("rows_in_file", "loaded", "rejected", "inserted", "updated", "unchanged")

FIRST_GOOD = [
    "1,Male,19,15,39",
    "2,Female,21,15.5,81",
    "3,F,20,16,",  # a new customer: no score yet
    "4,Female,35,60,50",
    "5,male,64,19,3",
    "6,Female,30,70,77",
]
FIRST_BAD = [
    "x,Male,30,50,40",  # id not a number
    ",Female,30,50,40",  # id missing
    "7,Robot,30,50,40",  # gender
    "8,Female,130,50,40",  # age out of range
    "9,Female,30,-1,40",  # negative income
    "10,Male,30,50,101",  # score out of range
    "11,Male,30,50",  # a field short
    "12,Male,30,50,40",  # the same id twice: both lines rejected
    "12,Female,31,51,41",
]
SECOND_UNCHANGED = ["1,Male,19,15,39", "2,Female,21,15.5,81"]
SECOND_UPDATED = ["3,F,20,16,44", "4,Female,36,60,50"]  # a score arrives; a birthday
SECOND_INSERTED = ["20,Male,40,80,60", "21,Female,22,90,", "22,M,55,33,12"]
SECOND_BAD = ["23,Female,11,40,40"]  # age below 12


def _write(path: Path, lines: list[str]) -> Path:
    """A CSV with blank lines sprinkled in (they are not rows) and CRLF endings."""
    body = []
    for i, line in enumerate(lines):
        body.append(line)
        if i % 4 == 1:
            body.append("")
    path.write_bytes(("\r\n".join([HEADER, *body, "", ""])).encode("utf-8"))
    return path


def _rows_in_file(path: Path) -> int:
    """Data lines of the file, counted here: every non-blank line after the header."""
    lines = path.read_bytes().decode("utf-8").splitlines()
    return sum(1 for line in lines[1:] if line.strip())


def _ingest(warehouse: Path, csv: Path) -> dict:
    result = runner.invoke(app, ["--warehouse", str(warehouse), "ingest", str(csv), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _query(warehouse: Path, sql: str, params: list) -> list[tuple]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def _stored(warehouse: Path, load_id: str) -> dict:
    [row] = _query(warehouse, f"select {', '.join(COUNTS)} from ingest_loads where load_id = ?", [load_id])
    return dict(zip(COUNTS, row))


def test_ingest_loads_holds_the_counts_of_each_load(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh" / "mallscore.duckdb"
    first_csv = _write(tmp_path / "day1.csv", [*FIRST_GOOD[:3], *FIRST_BAD[:5], *FIRST_GOOD[3:], *FIRST_BAD[5:]])
    second_csv = _write(tmp_path / "day2.csv", [*SECOND_BAD, *SECOND_UPDATED, *SECOND_INSERTED, *SECOND_UNCHANGED])

    first = _ingest(warehouse, first_csv)
    expected_first = {
        "rows_in_file": _rows_in_file(first_csv),
        "loaded": len(FIRST_GOOD),
        "rejected": len(FIRST_BAD),
        "inserted": len(FIRST_GOOD),
        "updated": 0,
        "unchanged": 0,
    }
    assert expected_first["rows_in_file"] == 15
    assert _stored(warehouse, first["load_id"]) == expected_first

    second = _ingest(warehouse, second_csv)
    expected_second = {
        "rows_in_file": _rows_in_file(second_csv),
        "loaded": 7,
        "rejected": len(SECOND_BAD),
        "inserted": len(SECOND_INSERTED),
        "updated": len(SECOND_UPDATED),
        "unchanged": len(SECOND_UNCHANGED),
    }
    assert expected_second["rows_in_file"] == 8
    assert _stored(warehouse, second["load_id"]) == expected_second
    assert {k: second[k] for k in COUNTS} == expected_second  # what the CLI printed is what it stored

    # the stored counts agree with what the load left in the tables
    for load, expected in ((first, expected_first), (second, expected_second)):
        [(rejected,)] = _query(warehouse, "select count(*) from rejected_rows where load_id = ?", [load["load_id"]])
        assert rejected == expected["rejected"]
    [(written,)] = _query(warehouse, "select count(*) from raw_customers where load_id = ?", [second["load_id"]])
    assert written == expected_second["inserted"] + expected_second["updated"]  # unchanged rows keep their load
    [(customers,)] = _query(warehouse, "select count(*) from raw_customers where customer_id > ?", [0])
    assert customers == len(FIRST_GOOD) + len(SECOND_INSERTED)

    again = _ingest(warehouse, second_csv)  # the same file again changes nothing
    assert _stored(warehouse, again["load_id"]) == {**expected_second, "inserted": 0, "updated": 0, "unchanged": 7}
