"""The SQL in sql/: one relation per file named like the file, the house shape, key checks."""

import re

import pytest

from mallscore.warehouse import KeyCheckError, build, check_keys, connect, relation_counts, sql_files

CREATE = re.compile(
    r"\bcreate\s+(?:or\s+replace\s+)?(?:temp\s+)?(table|view)\s+(?:if\s+not\s+exists\s+)?([a-z_][a-z0-9_.]*)", re.I
)


def test_one_relation_per_file_named_like_the_file():
    files = sql_files()
    assert [f.order for f in files] == sorted(f.order for f in files)
    for f in files:
        creates = CREATE.findall(f.text)
        assert [name for _, name in creates] == [f.relation], f"{f.path.name} must create exactly {f.relation}"
        code = re.sub(r"--[^\n]*|'[^']*'", "", f.text)
        assert code == code.lower(), f"{f.path.name}: lower-case SQL"


def test_views_follow_import_then_final_shape():
    for f in sql_files():
        if " view " in f.text:
            body = f.text.split(" as\n", 1)[1]
            assert body.lstrip().startswith("with "), f.path.name
            assert re.search(r"select \* from final", body), f.path.name


def test_build_is_idempotent_and_creates_every_relation(tmp_path):
    con = connect(tmp_path / "w.duckdb")
    build(con)
    build(con)
    names = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    assert {f.relation for f in sql_files()} <= names
    counts = relation_counts(con)
    assert counts.pop("label_rule") == 1  # the label's definition: one row, stated once
    assert counts.pop("segment_changes") is None  # not counted (next test)
    assert set(counts.values()) == {0}


def test_the_change_feed_is_shown_without_a_count():
    """Counting segment_changes joins the whole history (10M customers rescored three times: 11 s and 7 GiB
    in `mallscore status`): status and features leave its count out, and only relations marked so."""
    marked = {f.relation: f.not_counted for f in sql_files() if f.not_counted}
    assert list(marked) == ["segment_changes"] and "whole history" in marked["segment_changes"]


def test_features_and_labels_follow_the_raw_rows(con):
    con.execute(
        """insert into raw_customers values
           (1, 'Female', 30, 50, 51, 'L', now()), (2, 'Male', 40, 60, 50, 'L', now()), (3, 'Male', 20, 10, null, 'L', now())"""
    )
    assert con.execute(
        "select customer_id, gender_female, spending_score from features_customer order by 1"
    ).fetchall() == [(1, 1.0, 51.0), (2, 0.0, 50.0), (3, 0.0, None)]
    # the label: score > 50, only for customers with a known score (50 is not a high spender)
    assert con.execute("select customer_id, high_spender from labels_high_spender order by 1").fetchall() == [
        (1, 1),
        (2, 0),
    ]
    assert con.execute("select count(*) from training_set").fetchall() == [(2,)]
    # the cut lives in label_rule alone: moving it there moves every label
    con.execute(
        "create or replace view label_rule as select 40 as high_spender_above, 'spending_score > 40' as definition"
    )
    assert con.execute("select customer_id, high_spender from labels_high_spender order by 1").fetchall() == [
        (1, 1),
        (2, 1),
    ]


def test_the_label_cut_is_written_in_one_sql_file_only():
    from mallscore.warehouse import SQL_DIR

    mentions = [p.name for p in sorted(SQL_DIR.rglob("*.sql")) if "> 50" in p.read_text() or " 50 as" in p.read_text()]
    assert mentions == ["25_label_rule.sql"]


def test_key_checks_fail_the_build_on_a_duplicate(con):
    con.execute(
        "insert into raw_customers values (1, 'Male', 30, 50, 40, 'L', now()), (1, 'Male', 31, 50, 40, 'L', now())"
    )
    with pytest.raises(KeyCheckError, match=r"raw_customers\.customer_id: 0 null and 1 duplicated"):
        check_keys(con)
    with pytest.raises(KeyCheckError):
        build(con)


def test_key_checks_keep_within_a_memory_cap_however_many_customers(tmp_path):
    """Each key check groups by the key, which spills to disk beyond DuckDB's cap: 3M customers pass under a
    32MB cap (count(distinct), the check before, held every key in memory and ran out of it here)."""
    con = connect(tmp_path / "big.duckdb")
    try:
        build(con, check=False)
        con.execute(
            "insert into raw_customers select range + 1, 'Male', 30, 50.0, null, 'L', timestamp '2026-01-01' "
            "from range(3000000)"
        )
        con.execute("set memory_limit = '32MB'")
        cap = con.execute("select current_setting('memory_limit')").fetchall()[0][0]
        check_keys(con)
        con.execute("insert into raw_customers values (777, 'Female', 40, 60.0, null, 'L', timestamp '2026-01-02')")
        with pytest.raises(KeyCheckError, match=r"raw_customers\.customer_id: 0 null and 1 duplicated"):
            check_keys(con)
        assert con.execute("select current_setting('memory_limit')").fetchall()[0][0] == cap  # a lower cap stays
    finally:
        con.close()


def test_memory_cap_lowers_the_limit_for_its_block_only(tmp_path):
    from mallscore.warehouse import memory_cap

    con = connect(tmp_path / "w.duckdb")
    try:
        setting = "select current_setting('memory_limit')"
        con.execute("set memory_limit = '1GiB'")  # binary units: DuckDB shows them exactly, the restore is exact
        with memory_cap(con, "64MiB"):
            assert con.execute(setting).fetchall()[0][0] == "64.0 MiB"
        assert con.execute(setting).fetchall()[0][0] == "1.0 GiB"
        with memory_cap(con, "4GiB"):  # never raised
            assert con.execute(setting).fetchall()[0][0] == "1.0 GiB"
    finally:
        con.close()
