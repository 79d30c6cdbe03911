"""ingest --from: customers from a real PostgreSQL table or query, same rules and quarantine as CSV."""

from __future__ import annotations

import csv

import duckdb
import psycopg
import pytest
from typer.testing import CliRunner

import mallscore.cli  # noqa: F401  (registers commands)
from mallscore.cli.app import app
from mallscore.ingest_db import database_chunks
from tests.pg_server import APP_PASSWORD

runner = CliRunner()

# (CustomerID, Genre, Age, Annual Income (k$), Spending Score (1-100)) with the public data's headers
ROWS = [
    (1, "Male", "19", 15, 39),
    (2, "Female", "21", 15.5, 81),
    (3, "F", " 20 ", 16, None),  # new customer (no score), padded age
    (4, "X", "23", 16, 77),  # bad gender
    (5, "Female", "abc", 17, 40),  # age not a number
    (6, "Male", "150", 17, 76),  # age out of range
    (7, "Female", "35", -3, 6),  # negative income
    (8, "Male", "35", 18, 101),  # score out of range
    (None, "Male", "40", 20, 50),  # id missing
    (9, "Female", "31", 18, 42),
    (9, "Female", "31", 19, 43),  # duplicated id: both lines rejected
    (10, "Male", "64", 19, 3),
]
GOOD_IDS = [1, 2, 3, 10]


@pytest.fixture(scope="module")
def source_table(pg_server):
    """A customers table in the mall's database, mixed column types, quoted public-data headers."""
    with psycopg.connect(pg_server.url(), autocommit=True) as c:
        c.execute("drop table if exists mall_customers")
        c.execute(
            'create table mall_customers (row_order serial, "CustomerID" bigint, "Genre" text, "Age" text, '
            '"Annual Income (k$)" numeric(6,1), "Spending Score (1-100)" integer, notes text)'
        )
        with c.cursor() as cur:
            cur.executemany(
                'insert into mall_customers ("CustomerID", "Genre", "Age", "Annual Income (k$)", "Spending Score (1-100)") '
                "values (%s, %s, %s, %s, %s)",
                ROWS,
            )
    return "mall_customers"


def _invoke(warehouse, *args, env=None):
    return runner.invoke(app, ["--warehouse", str(warehouse), "ingest", *args], env=env or {})


def _duck(warehouse, query):
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


@pytest.mark.postgres
def test_ingest_from_a_table_quarantines_bad_rows_like_csv(tmp_path, pg_server, source_table):
    import json

    warehouse = tmp_path / "db.duckdb"
    result = _invoke(warehouse, "--from", pg_server.url(), "--table", source_table, "--json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert (counts["rows_in_file"], counts["loaded"], counts["rejected"]) == (12, 4, 8)
    assert "***" in counts["source"] and APP_PASSWORD not in result.output

    # the same rows as a CSV file give the same customers and the same reasons
    csv_path = tmp_path / "same.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["CustomerID", "Genre", "Age", "Annual Income (k$)", "Spending Score (1-100)"])
        w.writerows(
            [
                [
                    "" if v is None else (f"{v:.1f}" if isinstance(v, (int, float)) and i == 3 else v)
                    for i, v in enumerate(r)
                ]
                for r in ROWS
            ]
        )
    csv_warehouse = tmp_path / "csv.duckdb"
    assert _invoke(csv_warehouse, str(csv_path)).exit_code == 0

    customers = "select customer_id, gender, age, annual_income, spending_score from raw_customers order by 1"
    rejected = "select reason from rejected_rows order by line_no"
    assert _duck(warehouse, customers) == _duck(csv_warehouse, customers)
    assert [r[0] for r in _duck(warehouse, customers)] == GOOD_IDS
    db_reasons = [r[0] for r in _duck(warehouse, rejected)]
    assert db_reasons == [r[0] for r in _duck(csv_warehouse, rejected)]
    assert 'gender "X" is not one of Male, Female, M, F' in db_reasons
    assert sum("appears on more than one line" in r for r in db_reasons) == 2
    lines = [r[0] for r in _duck(warehouse, "select line_no from rejected_rows order by line_no")]
    assert lines == [4, 5, 6, 7, 8, 9, 10, 11]  # row positions in the source, 1 = first row
    sources = _duck(warehouse, "select source from ingest_loads")
    assert "s3cret" not in repr(sources) and "table=mall_customers" in sources[0][0]

    again = _invoke(warehouse, "--from", pg_server.url(), "--table", source_table, "--json")
    assert json.loads(again.stdout)["unchanged"] == 4  # idempotent, like CSV


@pytest.mark.postgres
def test_ingest_from_a_query_with_casts_and_percent_signs_and_env_url(tmp_path, pg_server, source_table):
    warehouse = tmp_path / "q.duckdb"
    query = (
        'select "CustomerID"::bigint as customer_id, "Genre" as gender, "Age" as age, '
        '"Annual Income (k$)" as annual_income_thousands, "Spending Score (1-100)" as spending_score '
        'from mall_customers where "Genre" not like \'X%\' and "Genre" <> \'a:b\' and "CustomerID" <= 3 order by row_order'
    )
    result = _invoke(
        warehouse,
        "--query",
        query,
        env={"MALLSCORE_SOURCE_URL": pg_server.url(password=None), "PGPASSWORD": APP_PASSWORD},
    )
    assert result.exit_code == 0, result.output
    assert "3 rows in source = 3 loaded + 0 rejected" in result.stdout
    assert _duck(warehouse, "select customer_id, age, annual_income, spending_score from raw_customers order by 1") == [
        (1, 19, 15.0, 39),
        (2, 21, 15.5, 81),
        (3, 20, 16.0, None),
    ]


@pytest.mark.postgres
def test_the_source_is_streamed_in_chunks_and_read_only(pg_server, source_table):
    chunks = list(database_chunks(pg_server.url(), table=source_table, chunk_rows=5))
    assert [c.num_rows for c in chunks] == [5, 5, 2]
    assert [c.column("line_no")[0].as_py() for c in chunks] == [1, 6, 11]
    with pytest.raises(Exception, match="read-only transaction"):  # the source is never written
        list(database_chunks(pg_server.url(), query="select nextval('mall_customers_row_order_seq') as x"))
    with pytest.raises(Exception, match="syntax error"):  # only queries that return rows, through a cursor
        list(database_chunks(pg_server.url(), query="delete from mall_customers returning *"))
    with psycopg.connect(pg_server.url()) as c:
        assert c.execute("select count(*) from mall_customers").fetchall() == [(12,)]


@pytest.mark.postgres
@pytest.mark.parametrize(
    "case, code, words",
    [
        ("missing_table", 78, "source table no_such_table does not exist"),
        ("bad_password", 78, "authentication failed"),
        ("unreachable", 75, "retry later"),
        ("no_permission", 78, "permission denied"),
        ("bad_query", 78, "the SQL was rejected"),
        ("missing_column", 65, "required column(s) missing"),
        ("both_table_and_query", 2, "exactly one of --table"),
    ],
)
def test_ingest_errors_exit_codes_and_nothing_loaded(tmp_path, pg_server, source_table, case, code, words):
    url, args = pg_server.url(), ["--table", source_table]
    if case == "missing_table":
        args = ["--table", "no_such_table"]
    elif case == "bad_password":
        url = pg_server.url(password="not-" + APP_PASSWORD)
    elif case == "unreachable":
        url = url.replace(f":{pg_server.port}/", ":1/")
    elif case == "no_permission":
        with psycopg.connect(pg_server.dsn(), autocommit=True) as c:
            c.execute("create table if not exists locked.secret_customers (customer_id bigint)")
        args = ["--table", "locked.secret_customers"]
    elif case == "bad_query":
        args = ["--query", "select nonsense from mall_customers"]
    elif case == "missing_column":
        args = ["--query", 'select "CustomerID", "Genre", "Age" from mall_customers']
    elif case == "both_table_and_query":
        args = ["--table", source_table, "--query", "select 1"]
    warehouse = tmp_path / "err.duckdb"

    result = _invoke(warehouse, "--from", url, *args)

    assert result.exit_code == code, result.output
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "s3cret" not in result.output
    if warehouse.exists():
        assert _duck(warehouse, "select count(*) from raw_customers") == [(0,)]
        assert _duck(warehouse, "select count(*) from ingest_loads") == [(0,)]


def test_ingest_from_any_sqlalchemy_database_sqlite(tmp_path):
    import sqlite3

    source = tmp_path / "shop.sqlite"
    with sqlite3.connect(source) as c:
        c.execute(
            "create table customers (customer_id integer, gender text, age integer, annual_income real, spending_score integer)"
        )
        c.executemany(
            "insert into customers values (?, ?, ?, ?, ?)",
            [(1, "Male", 30, 40.0, 60), (2, "Female", 200, 40.0, 60), (3, "F", 41, 70.5, None)],
        )
    warehouse = tmp_path / "s.duckdb"
    result = _invoke(warehouse, "--from", f"sqlite:///{source}", "--table", "customers")
    assert result.exit_code == 0, result.output
    assert "3 rows in source = 2 loaded + 1 rejected" in result.stdout
    assert _duck(warehouse, "select reason from rejected_rows") == [("age 200 is outside 12..120",)]
    missing = _invoke(warehouse, "--from", f"sqlite:///{source}", "--table", "nope")
    assert missing.exit_code == 78 and "does not exist" in missing.stderr
