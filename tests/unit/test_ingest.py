"""CSV ingest on real DuckDB files: header variants, every rejection reason, whole-file failures."""

import json

import pytest

from mallscore.errors import BadInputError, InputMissingError
from mallscore.ingest import ingest_csv

PUBLIC = "CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)"
GENRE = "CustomerID,Genre,Age,Annual Income (k$),Spending Score (1-100)"
SNAKE = "customer_id,gender,age,annual_income_thousands,spending_score"


def write(tmp_path, text, name="c.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def customers(con):
    return con.execute(
        "select customer_id, gender, age, annual_income, spending_score from raw_customers order by 1"
    ).fetchall()


@pytest.mark.parametrize(
    "header", [PUBLIC, GENRE, SNAKE, "  customerid , GENDER,age , annual income (K$), spending SCORE (1-100) "]
)
def test_header_variants(con, tmp_path, header):
    result = ingest_csv(con, write(tmp_path, f"{header}\n1,Male,19,15,39\n2,female,21,15,\n"))
    assert (result.rows_in_file, result.loaded, result.rejected) == (2, 2, 0)
    assert customers(con) == [(1, "Male", 19, 15.0, 39), (2, "Female", 21, 15.0, None)]


REJECTS = [
    (",Male,30,50,40", "customer_id is missing"),
    ("abc,Male,30,50,40", 'customer_id "abc" is not a whole number'),
    ("1.5,Male,30,50,40", "not a whole number"),
    ("7,Other,30,50,40", 'gender "Other" is not one of'),
    ("7,,30,50,40", "gender is missing"),
    ("7,Male,old,50,40", 'age "old" is not a number'),
    ("7,Male,,50,40", "age is missing"),
    ("7,Male,11,50,40", "outside 12..120"),
    ("7,Male,121,50,40", "outside 12..120"),
    ("7,Male,-3,50,40", "outside 12..120"),
    ("7,Male,30.5,50,40", "not a whole number of years"),
    ("7,Male,30,rich,40", 'annual income "rich" is not a number'),
    ("7,Male,30,-1,40", "annual income -1 is negative"),
    ("7,Male,30,inf,40", "is not a number"),
    ("7,Male,30,50,0", "spending score 0 is outside 1..100"),
    ("7,Male,30,50,101", "outside 1..100"),
    ("7,Male,30,50,NaN", "is not a number"),
    ("7,Male,30,50,1e309", "is not a number"),
    ("7,Male,30,50,42.5", "not a whole number"),
    ("7,Male,30,50", "line has 4 fields, the header has 5"),
]


@pytest.mark.parametrize("line,reason", REJECTS)
def test_each_rejection_reason(con, tmp_path, line, reason):
    result = ingest_csv(con, write(tmp_path, f"{PUBLIC}\n1,Male,30,50,40\n{line}\n2,F,40,60,\n"))
    assert (result.rows_in_file, result.loaded, result.rejected) == (3, 2, 1)
    ((load_id, line_no, why, raw),) = con.execute(
        "select load_id, line_no, reason, raw_values from rejected_rows"
    ).fetchall()
    assert load_id == result.load_id and line_no == 3
    assert reason in why
    assert json.loads(raw)["customer_id"] == line.split(",")[0]
    assert [c[0] for c in customers(con)] == [1, 2]


def test_duplicate_ids_in_one_file_are_all_rejected(con, tmp_path):
    result = ingest_csv(
        con, write(tmp_path, f"{PUBLIC}\n1,Male,30,50,40\n1,Male,31,50,40\n 01 ,Male,32,50,40\n2,M,20,20,20\n")
    )
    assert (result.rows_in_file, result.loaded, result.rejected) == (4, 1, 3)
    reasons = [r for (r,) in con.execute("select reason from rejected_rows order by line_no").fetchall()]
    assert all("appears on more than one line" in r for r in reasons)


def test_reingest_changes_nothing_and_newest_load_wins(con, tmp_path):
    first = ingest_csv(con, write(tmp_path, f"{PUBLIC}\n1,Male,30,50,40\n2,Female,40,60,\n"))
    stamp = con.execute("select customer_id, load_id, updated_at from raw_customers order by 1").fetchall()
    again = ingest_csv(con, write(tmp_path, f"{PUBLIC}\n1,Male,30,50,40\n2,Female,40,60,\n"))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    assert con.execute("select customer_id, load_id, updated_at from raw_customers order by 1").fetchall() == stamp
    later = ingest_csv(con, write(tmp_path, f"{SNAKE}\n2,Female,40,60,77\n3,Male,22,90,\n", name="later.csv"))
    assert (later.inserted, later.updated, later.unchanged) == (1, 1, 0)
    assert customers(con) == [(1, "Male", 30, 50.0, 40), (2, "Female", 40, 60.0, 77), (3, "Male", 22, 90.0, None)]
    # later jobs see the change: the label view follows the newest load
    assert con.execute("select high_spender from labels_high_spender where customer_id = 2").fetchall() == [(1,)]
    assert first.load_id != again.load_id != later.load_id


def test_bom_crlf_semicolons_quotes_and_blank_lines(con, tmp_path):
    text = '\ufeffCustomerID;Gender;Age;Annual Income (k$);Spending Score (1-100)\r\n1;Male;30;50;40\r\n\r\n"2";"Fe""male";40;60;\r\n3;F;41;70;9\r\n'
    result = ingest_csv(con, write(tmp_path, text))
    assert (result.rows_in_file, result.loaded, result.rejected) == (3, 2, 1)
    assert con.execute("select line_no from rejected_rows").fetchall() == [(4,)]


def test_latin1_file_loads(con, tmp_path):
    text = f"{PUBLIC},Name\n1,Male,30,50,40,Jos\xe9\n"
    result = ingest_csv(con, write(tmp_path, text, encoding="latin-1"))
    assert (result.loaded, result.rejected) == (1, 0)


def test_header_only_loads_nothing_and_succeeds(con, tmp_path):
    result = ingest_csv(con, write(tmp_path, PUBLIC + "\n"))
    assert (result.rows_in_file, result.loaded, result.rejected) == (0, 0, 0)


@pytest.mark.parametrize(
    "content,match",
    [
        ("", "empty"),
        ("\n\n  \n", "empty"),
        ("CustomerID,Gender,Age,Spending Score (1-100)\n1,Male,30,40\n", "annual_income"),
        ("CustomerID,Gender,Genre,Age,Annual Income (k$),Spending Score (1-100)\n", "appears twice"),
        ('[{"CustomerID": 1}]', "JSON"),
        (b"\x00\x01\x02\xff\xfe" * 100, "binary"),
    ],
)
def test_whole_file_problems_load_nothing(con, tmp_path, content, match):
    with pytest.raises(BadInputError, match=match):
        ingest_csv(con, write(tmp_path, content))
    assert con.execute("select count(*) from raw_customers").fetchall() == [(0,)]
    assert con.execute("select count(*) from ingest_loads").fetchall() == [(0,)]


def test_missing_file_and_directory(con, tmp_path):
    with pytest.raises(InputMissingError, match="no such file"):
        ingest_csv(con, tmp_path / "nope.csv")
    with pytest.raises(InputMissingError, match="directory"):
        ingest_csv(con, tmp_path)
