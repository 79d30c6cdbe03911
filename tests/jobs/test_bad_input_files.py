"""Bad input files through the real CLI: each loads with every bad row quarantined, or is refused whole.

Never a traceback; rows in = loaded + rejected; a refused file writes nothing.
"""

import json

import duckdb
import pytest

H = "CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)"
GOOD = "1,Male,30,50,40\n2,Female,41,70,\n"

# name -> (bytes, expected: ("load", loaded, rejected) or ("refuse", exit code))
CASES = {
    "utf8_bom": (("\ufeff" + H + "\n" + GOOD).encode(), ("load", 2, 0)),
    "latin1": ((H + ",Note\n" + "1,Male,30,50,40,caf\xe9\n").encode("latin-1"), ("load", 1, 0)),
    "semicolons": ((H.replace(",", ";") + "\n1;Male;30;50;40\n").encode(), ("load", 1, 0)),
    "quoted_commas": (
        (H + ',Name\n1,Male,30,50,40,"Doe, Jane"\n"2","Female","41","70","","Roe"\n').encode(),
        ("load", 2, 0),
    ),
    "crlf": ((H + "\r\n" + GOOD.replace("\n", "\r\n")).encode(), ("load", 2, 0)),
    "empty": (b"", ("refuse", 65)),
    "header_only": ((H + "\n").encode(), ("load", 0, 0)),
    "extra_columns": ((H + ",Email,Phone\n1,Male,30,50,40,a@b.c,123\n").encode(), ("load", 1, 0)),
    "missing_column": (b"CustomerID,Gender,Age,Annual Income (k$)\n1,Male,30,50\n", ("refuse", 65)),
    "duplicate_headers": ((H + ",Age\n1,Male,30,50,40,31\n").encode(), ("refuse", 65)),
    "blank_lines": ((H + "\n\n1,Male,30,50,40\n\n\n2,Female,41,70,\n\n").encode(), ("load", 2, 0)),
    "nan_inf_1e309": (
        (H + "\n1,Male,NaN,50,40\n2,Male,30,inf,40\n3,Male,30,50,1e309\n4,Male,30,-inf,\n5,M,30,50,40\n").encode(),
        ("load", 1, 4),
    ),
    "negative_and_fractional_ages": (
        (H + "\n1,Male,-30,50,40\n2,Male,30.5,50,40\n3,Male,30.0,50,40\n").encode(),
        ("load", 1, 2),
    ),
    "ids_with_spaces_and_zeros": (
        (H + "\n 1 ,Male,30,50,40\n007,Male,30,50,40\n1 2,Male,30,50,40\n").encode(),
        ("load", 2, 1),
    ),
    "duplicate_ids": ((H + "\n1,Male,30,50,40\n1,Female,31,50,40\n2,Male,20,20,20\n").encode(), ("load", 1, 2)),
    "ten_mb_line": ((H + "\n" + "9" * 10_000_000 + ",Male,30,50,40\n" + GOOD).encode(), ("load", 2, 1)),
    "binary_garbage": (bytes(range(256)) * 40, ("refuse", 65)),
    "truncated_last_line": ((H + "\n" + GOOD + "3,Fem").encode(), ("load", 2, 1)),
    "unclosed_quote_last_line": ((H + "\n" + GOOD + '3,"Female,30,50,40').encode(), ("load", 2, 1)),
    "really_json": (b'{"customers": [{"CustomerID": 1, "Gender": "Male"}]}', ("refuse", 65)),
    "json_lines": (b'{"CustomerID": 1}\n{"CustomerID": 2}\n', ("refuse", 65)),
    "tabs": ((H.replace(",", "\t") + "\n1\tMale\t30\t50\t40\n").encode(), ("load", 1, 0)),
    "only_whitespace": (b"   \n\t\n", ("refuse", 65)),
    "gender_words": ((H + "\n1,FEMALE,30,50,40\n2,m,30,50,40\n3,woman,30,50,40\n").encode(), ("load", 2, 1)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_file(cli, settings, tmp_path, name):
    content, expected = CASES[name]
    path = tmp_path / f"{name}.csv"
    path.write_bytes(content)
    out = cli("ingest", path, "--json")
    assert "Traceback" not in out.stderr
    if expected[0] == "refuse":
        assert out.returncode == expected[1], out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        con = duckdb.connect(str(settings.warehouse), read_only=True)
        assert con.execute("select count(*) from raw_customers").fetchall() == [(0,)]
        assert con.execute("select count(*) from ingest_loads").fetchall() == [(0,)]
        con.close()
        return
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["loaded"], result["rejected"]) == expected[1:]
    assert result["rows_in_file"] == result["loaded"] + result["rejected"]
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    reasons = con.execute("select reason from rejected_rows where load_id = ?", [result["load_id"]]).fetchall()
    loaded = con.execute("select count(*) from raw_customers where load_id = ?", [result["load_id"]]).fetchall()[0][0]
    con.close()
    assert len(reasons) == result["rejected"] and all(r for (r,) in reasons)
    assert loaded == result["loaded"]
