"""SQL-looking values in CSV cells, headers and file names are data, never code."""

import json

import duckdb
import pytest

H = "CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)"
PAYLOADS = [
    "x; DROP TABLE raw_customers; --",
    "1'); DROP TABLE raw_customers; --",
    "1; COPY raw_customers TO 'LEAK.csv'; --",
    '"; DROP TABLE ingest_loads; --',
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_in_cells_headers_and_names_run_nothing(cli, settings, tmp_path, payload):
    assert cli("synth", "--rows", "20").returncode == 0
    quoted = '"' + payload.replace('"', '""') + '"'
    body = f"{H},{quoted}\n{quoted},Male,30,50,40,x\n5,{quoted},30,50,40,x\n6,Male,{quoted},50,40,x\n7,Male,30,50,40,{quoted}\n"
    path = tmp_path / "in; DROP TABLE raw_customers; --.csv"
    path.write_text(body)
    out = cli("ingest", path, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["rows_in_file"], result["loaded"], result["rejected"]) == (4, 1, 3)
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    assert con.execute("select count(*) from raw_customers").fetchall() == [(20,)]  # 7 was an update of a synthetic id
    assert con.execute("select count(*) from ingest_loads").fetchall() == [(2,)]
    stored = [
        json.loads(r)["customer_id"]
        for (r,) in con.execute("select raw_values from rejected_rows order by line_no").fetchall()
    ]
    con.close()
    assert stored[0] == payload  # kept verbatim, as data
    assert not list(tmp_path.glob("LEAK*")) and not list(settings.warehouse.parent.glob("LEAK*"))
