"""publish: to a real PostgreSQL server (COPY path) and a real SQLite file (generic path)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import psycopg
import pytest
from typer.testing import CliRunner

import mallscore.cli  # noqa: F401  (registers commands)
from mallscore.cli.app import app
from mallscore.publish import publish_from, publish_segments
from tests.helpers import fill_segments, warehouse_with_segments
from tests.pg_server import APP_PASSWORD, APP_USER, DATABASE

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _cli(settings, *args, env=None):
    return runner.invoke(app, ["--warehouse", str(settings.warehouse), *args], env=env or {})


def _duck_rows(settings, table="segments"):
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return con.execute(f"select * from {table} order by customer_id").fetchall()
    finally:
        con.close()


def _pg(server):
    return psycopg.connect(server.url(), autocommit=True)


def _pg_rows(server, table):
    with _pg(server) as c:
        return c.execute(f'select * from "{table}" order by customer_id').fetchall()


def _next_run(settings, run_id, *, new=0, changed=0, removed=0):
    """What a nightly run does to segments: score new customers, rescore changed ones, archive removed ones."""
    con = duckdb.connect(str(settings.warehouse))
    try:
        at = f"{run_id[1:5]}-{run_id[5:7]}-{run_id[7:9]} {run_id[10:12]}:{run_id[12:14]}:{run_id[14:16]}"
        params = {"run": run_id, "at": at}  # runs start in run id order
        top = con.execute("select max(customer_id) from segments").fetchall()[0][0]
        removed_ids = "(select customer_id from segments order by customer_id limit $n)"
        con.execute(
            f"insert into segment_archive by name select *, $run as archived_by_run from segments where customer_id in {removed_ids}",
            {"n": removed, "run": run_id},
        )
        con.execute(f"delete from segments where customer_id in {removed_ids}", {"n": removed})
        changed_ids = "(select customer_id from segments where customer_id % 7 = 3 order by customer_id limit $n)"
        con.execute(  # the rows a run replaces move to the archive, marked with the run (the change feed's source)
            f"insert into segment_archive by name select *, $run as archived_by_run from segments where customer_id in {changed_ids}",
            {"n": changed, "run": run_id},
        )
        con.execute(
            """
            update segments set segment = case segment when 'gold' then 'bronze' else 'gold' end,
                   p_high_spender = 1 - p_high_spender, model_version = 'm2', run_id = $run,
                   scored_at = $at::timestamp
            where customer_id in (select customer_id from segments where customer_id % 7 = 3
                                  order by customer_id limit $n)
            """,
            {**params, "n": changed},
        )
        con.execute(
            """
            insert into segments by name
            select customer_id + $top as customer_id, segment, p_high_spender, predicted_high_spender, basis,
                   'm2' as model_version, $run as run_id, $at::timestamp as scored_at, customer_updated_at
            from segments order by customer_id limit $n
            """,
            {**params, "n": new, "top": top},
        )
        con.execute(
            "insert into scoring_runs (run_id, mode, started_at, finished_at, status, model_version, model_sha256, "
            "rows_read, rows_scored, rows_rejected, error) values ($run, 'nightly', $at::timestamp, "
            "$at::timestamp, 'succeeded', 'm2', 'def456', $n, $n, 0, null)",
            {**params, "n": new + changed},
        )
    finally:
        con.close()


class _Injected(RuntimeError):
    pass


def _fail_after_first_batch(rows):
    raise _Injected(f"injected failure after {rows} rows")


def _digest(rows) -> str:
    """An order-insensitive checksum of a table's rows."""
    return hashlib.sha256(repr(sorted(rows)).encode()).hexdigest()


def _assert_target_equals_segments(settings, server, table):
    target, segments = _pg_rows(server, table), _duck_rows(settings)
    assert len(target) == len(segments)
    assert _digest(target) == _digest(segments)


@pytest.mark.postgres
def test_publish_twice_gives_the_same_tables_and_exact_values(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 3000)
    first = publish_segments(settings, pg_server.url(), "seg_twice")
    rows_first = _pg_rows(pg_server, "seg_twice")
    second = publish_segments(settings, pg_server.url(), "seg_twice")
    rows_second = _pg_rows(pg_server, "seg_twice")

    assert (first["mode"], first["reason"], first["rows_written"]) == ("full", "new table", 3000)
    assert (second["mode"], second["rows_written"], second["run_id"]) == ("incremental", 0, "R20261127T010000Z-aaaaaa")
    assert first["rows"] == second["rows"] == 3000 and first["method"] == "copy"
    assert rows_first == rows_second == _duck_rows(settings)  # bit-exact doubles, same timestamps
    with _pg(pg_server) as c:
        runs = c.execute("select run_id, status, rows_scored, is_current from seg_twice_runs").fetchall()
        pkey = c.execute(
            "select conname from pg_constraint where conrelid = 'seg_twice'::regclass and contype = 'p'"
        ).fetchall()
    assert runs == [("R20261127T010000Z-aaaaaa", "ok", 3000, True)]
    assert pkey == [("seg_twice_pkey",)]


@pytest.mark.postgres
def test_published_schema_is_derived_from_the_warehouse_catalog(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 20)
    con = duckdb.connect(str(settings.warehouse))
    con.execute("alter table segments add column segment_rank integer default 3")  # a column sql/04 may grow
    con.close()
    publish_segments(settings, pg_server.url(), "seg_schema")
    with _pg(pg_server) as c:
        columns = c.execute(
            "select table_name, column_name, data_type, is_nullable from information_schema.columns "
            "where table_name in ('seg_schema', 'seg_schema_runs') order by table_name, ordinal_position"
        ).fetchall()
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    warehouse = con.execute(
        "select table_name, column_name, data_type, is_nullable from duckdb_columns() "
        "where table_name in ('segments', 'scoring_runs') order by table_name desc, column_index"
    ).fetchall()
    con.close()
    mapping = {
        "BIGINT": "bigint",
        "INTEGER": "integer",
        "VARCHAR": "text",
        "DOUBLE": "double precision",
        "BOOLEAN": "boolean",
        "TIMESTAMP": "timestamp without time zone",
    }
    published = [
        (t.replace("seg_schema_runs", "scoring_runs").replace("seg_schema", "segments"), *r) for t, *r in columns
    ]
    expected = [
        (t, c, mapping[d], "YES" if n and c not in ("customer_id", "run_id") else "NO") for t, c, d, n in warehouse
    ]
    extra = [
        ("scoring_runs", "published_at", "timestamp without time zone", "YES"),
        ("scoring_runs", "is_current", "boolean", "YES"),
    ]
    assert sorted(published) == sorted(expected + extra)
    assert ("scoring_runs", "engine", "text", "YES") in published  # not in any hand-written list
    assert _pg_rows(pg_server, "seg_schema") == _duck_rows(settings)


@pytest.mark.postgres
def test_tables_published_by_an_older_mallscore_are_taken_over(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 200)
    with _pg(pg_server) as c:  # what the swapping publisher left: no engine, no is_current
        c.execute(
            "create table seg_old (customer_id bigint primary key, segment text not null, p_high_spender double "
            "precision not null, predicted_high_spender boolean not null, basis text not null, model_version text "
            "not null, run_id text not null, scored_at timestamp not null, customer_updated_at timestamp not null)"
        )
        c.execute(
            "insert into seg_old select g, 'gold', 0.5, true, 'model', 'm0', 'R0', now(), now() from generate_series(1, 250) g"
        )
        c.execute(
            "create table seg_old_runs (run_id text primary key, mode text not null, started_at timestamp not null, "
            "finished_at timestamp, status text not null, model_version text, model_sha256 text, rows_read bigint, "
            "rows_scored bigint, rows_rejected bigint, error text, published_at timestamp not null)"
        )

    first = publish_segments(settings, pg_server.url(), "seg_old")
    _next_run(settings, "R20261128T010000Z-bbbbbb", changed=10)
    second = publish_segments(settings, pg_server.url(), "seg_old")

    assert (first["mode"], first["reason"]) == ("full", "the target records no run")
    assert (second["mode"], second["rows_written"]) == ("incremental", 10)
    _assert_target_equals_segments(settings, pg_server, "seg_old")
    with _pg(pg_server) as c:
        runs = c.execute("select run_id, engine, is_current from seg_old_runs order by run_id").fetchall()
    assert runs == [("R20261127T010000Z-aaaaaa", None, False), ("R20261128T010000Z-bbbbbb", None, True)]


@pytest.mark.postgres
@pytest.mark.parametrize("array_keys", [100_000, 10])  # removed keys as one array parameter, or staged
def test_incremental_publish_writes_only_the_changes_and_equals_segments(tmp_path, pg_server, monkeypatch, array_keys):
    from mallscore import publication

    monkeypatch.setattr(publication, "ARRAY_DELETE_KEYS", array_keys)
    table = f"seg_incr_{array_keys}"
    settings = warehouse_with_segments(tmp_path, 800)
    publish_segments(settings, pg_server.url(), table)
    _next_run(settings, "R20261128T010000Z-bbbbbb", new=40, changed=100, removed=30)

    result = _cli(settings, "publish", "--to", pg_server.url(), "--table", table, "--json")

    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["mode"], out["run_id"], out["previous_run_id"]) == (
        "incremental",
        "R20261128T010000Z-bbbbbb",
        "R20261127T010000Z-aaaaaa",
    )
    assert (out["inserted"], out["updated"], out["deleted"], out["rows_written"]) == (40, 100, 30, 170)
    assert out["table"] == table and out["rows"] == 810
    _assert_target_equals_segments(settings, pg_server, table)
    with _pg(pg_server) as c:
        runs = c.execute(f"select run_id, is_current from {table}_runs order by run_id").fetchall()
    assert runs == [("R20261127T010000Z-aaaaaa", False), ("R20261128T010000Z-bbbbbb", True)]

    # a run that scored nobody: the target moves to it and writes nothing
    _next_run(settings, "R20261129T010000Z-cccccc")
    again = publish_segments(settings, pg_server.url(), table)
    assert (again["mode"], again["rows_written"], again["run_id"]) == ("incremental", 0, "R20261129T010000Z-cccccc")
    _assert_target_equals_segments(settings, pg_server, table)


@pytest.mark.postgres
def test_full_publish_equals_incremental(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 700)
    publish_segments(settings, pg_server.url(), "seg_a")
    publish_segments(settings, pg_server.url(), "seg_b")
    _next_run(settings, "R20261128T010000Z-bbbbbb", new=25, changed=60, removed=15)

    incremental = publish_segments(settings, pg_server.url(), "seg_a")
    full = _cli(settings, "publish", "--to", pg_server.url(), "--table", "seg_b", "--full", "--json")

    assert full.exit_code == 0, full.output
    out = json.loads(full.stdout)
    # every row compared, only the differences written
    assert (out["mode"], out["reason"], out["inserted"], out["updated"], out["deleted"]) == (
        "full",
        "--full",
        25,
        60,
        15,
    )
    assert (incremental["mode"], incremental["rows_written"]) == ("incremental", 100)
    assert _pg_rows(pg_server, "seg_a") == _pg_rows(pg_server, "seg_b") == _duck_rows(settings)

    con = duckdb.connect(str(settings.warehouse))  # a new model rescores everyone: most rows differ
    fill_segments(con, "R20261129T010000Z-cccccc", model_version="m3")
    con.execute("update scoring_runs set started_at = timestamp '2026-11-29 01:00:00' where run_id like 'R20261129%'")
    con.close()
    incremental = publish_segments(settings, pg_server.url(), "seg_a")
    full = publish_segments(settings, pg_server.url(), "seg_b", full=True)
    assert (full["inserted"], full["updated"], full["deleted"]) == (700, 0, 710)  # rewritten: delete + COPY
    # the 15 archived customers come back, the 25 added by hand (never archived) go: found by comparing keys
    assert (incremental["inserted"], incremental["updated"], incremental["deleted"]) == (15, 685, 25)
    assert _pg_rows(pg_server, "seg_a") == _pg_rows(pg_server, "seg_b") == _duck_rows(settings)


@pytest.mark.postgres
def test_full_publish_into_an_emptied_target_loads_every_row(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 300)
    publish_segments(settings, pg_server.url(), "seg_emptied")
    with _pg(pg_server) as c:  # someone empties the live table: COPY TO then sends no CSV at all
        c.execute("delete from seg_emptied")

    result = publish_segments(settings, pg_server.url(), "seg_emptied", full=True)

    assert (result["mode"], result["inserted"], result["deleted"]) == ("full", 300, 0)
    _assert_target_equals_segments(settings, pg_server, "seg_emptied")


@pytest.mark.postgres
def test_target_changed_behind_mallscores_back_is_rewritten(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 500)
    publish_segments(settings, pg_server.url(), "seg_drift")
    with _pg(pg_server) as c:
        c.execute("delete from seg_drift where customer_id <= 10")
        c.execute(
            "update seg_drift set segment = 'edited', p_high_spender = p_high_spender + 1e-15 where customer_id = 40"
        )
    _next_run(settings, "R20261128T010000Z-bbbbbb", changed=5)

    result = publish_segments(settings, pg_server.url(), "seg_drift")

    assert result["mode"] == "full" and "did not hold run R20261127T010000Z-aaaaaa" in result["reason"]
    # customers 3 and 10 are among the 5 rescored: written by the incremental step, the rest by the comparison
    assert (result["inserted"], result["updated"], result["deleted"]) == (10, 4, 0)
    _assert_target_equals_segments(settings, pg_server, "seg_drift")


@pytest.mark.postgres
def test_incremental_publish_counts_in_its_own_transaction_without_a_second_connection(tmp_path, pg_server):
    """A role limited to one connection: the count beside the writes (a second connection) cannot start, the
    publication counts after its writes instead, and still notices a row deleted by hand."""
    with psycopg.connect(pg_server.dsn(), autocommit=True) as c:
        c.execute("create role mallscore_one_conn login password 'one-pw' connection limit 1")
        c.execute("grant create, usage on schema public to mallscore_one_conn")
    url = pg_server.url(user="mallscore_one_conn", password="one-pw")
    settings = warehouse_with_segments(tmp_path, 400)
    publish_segments(settings, url, "seg_one_conn")
    with psycopg.connect(pg_server.dsn(), autocommit=True) as c:
        c.execute(f"grant select on seg_one_conn to {APP_USER}")  # for the comparison below
    _next_run(settings, "R20261128T010000Z-bbbbbb", new=10, changed=20, removed=5)
    result = publish_segments(settings, url, "seg_one_conn")
    assert (result["mode"], result["inserted"], result["updated"], result["deleted"]) == ("incremental", 10, 20, 5)
    _assert_target_equals_segments(settings, pg_server, "seg_one_conn")

    with psycopg.connect(pg_server.dsn(), autocommit=True) as c:
        c.execute("delete from seg_one_conn where customer_id in (200, 201)")  # not among those rescored
    _next_run(settings, "R20261129T010000Z-cccccc", changed=3)
    again = publish_segments(settings, url, "seg_one_conn")
    assert again["mode"] == "full" and "did not hold run" in again["reason"]
    _assert_target_equals_segments(settings, pg_server, "seg_one_conn")


@pytest.mark.postgres
def test_a_new_run_keeps_grants_and_run_rows(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 500)
    publish_segments(settings, pg_server.url(), "seg_grants")
    with _pg(pg_server) as c:
        c.execute("grant select on seg_grants, seg_grants_runs to mallscore_reader")
    con = duckdb.connect(str(settings.warehouse))
    con.execute("delete from raw_customers where customer_id > 400")
    fill_segments(con, "R20261128T010000Z-bbbbbb", model_version="m2")
    con.close()

    result = publish_segments(settings, pg_server.url(), "seg_grants")

    assert result["run_ids"] == ["R20261128T010000Z-bbbbbb"]
    assert (result["mode"], result["updated"], result["deleted"]) == ("incremental", 400, 100)
    reader_url = pg_server.url(user="mallscore_reader", password="reader-pw")
    with psycopg.connect(reader_url) as c:  # the campaign tool's role still reads the new table
        assert c.execute("select count(*), min(model_version), max(model_version) from seg_grants").fetchall() == [
            (400, "m2", "m2")
        ]
        assert c.execute("select run_id from seg_grants_runs where is_current").fetchall() == [
            ("R20261128T010000Z-bbbbbb",)
        ]
    with _pg(pg_server) as c:
        runs = c.execute("select run_id from seg_grants_runs order by run_id").fetchall()
    assert runs == [("R20261127T010000Z-aaaaaa",), ("R20261128T010000Z-bbbbbb",)]


@pytest.mark.postgres
def test_the_changes_table_grows_by_exactly_each_runs_feed(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 300)  # run aaaaaa scored 300 customers: all new

    first = publish_segments(settings, pg_server.url(), "seg_feed")
    _next_run(settings, "R20261128T010000Z-bbbbbb", new=10, changed=20)  # segments flip: 20 changed
    second = publish_segments(settings, pg_server.url(), "seg_feed")
    again = publish_segments(settings, pg_server.url(), "seg_feed", full=True)

    assert (first["changes_appended"], second["changes_appended"], again["changes_appended"]) == (300, 30, 0)
    with _pg(pg_server) as c:
        published = c.execute("select * from seg_feed_changes order by run_id, customer_id").fetchall()
        types = c.execute(
            "select data_type from information_schema.columns where table_name = 'seg_feed_changes' "
            "order by ordinal_position"
        ).fetchall()
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    feed = con.execute("select * from segment_changes order by run_id, customer_id").fetchall()
    con.close()
    assert published == feed and len(feed) == 330
    assert sum(r[3] is None for r in published) == 310  # NULLs (new customers) survive the trip
    assert [t for (t,) in types] == ["bigint", "text", "text", "text", "text"] + ["double precision"] * 2 + [
        "boolean"
    ] * 2 + ["timestamp without time zone"] + ["text"] * 3  # previous_behaviour_group, behaviour_group, top_reason


# --- readers: snapshots, held tables, pg_dump, failures ---------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize(
    "isolation, mode",
    [("REPEATABLE_READ", "incremental"), ("REPEATABLE_READ", "full"), ("SERIALIZABLE", "rewrite")],
)
def test_a_snapshot_taken_before_a_publish_keeps_the_whole_old_table(tmp_path, pg_server, isolation, mode):
    """incremental: upserts; full: every row compared, differences written; rewrite: every row deleted, COPY."""
    table = f"seg_snap_{mode}"
    settings = warehouse_with_segments(tmp_path, 400)
    publish_segments(settings, pg_server.url(), table)
    before = _pg_rows(pg_server, table)
    if mode == "rewrite":  # a new model rescored everyone
        con = duckdb.connect(str(settings.warehouse))
        fill_segments(con, "R20261128T010000Z-bbbbbb", model_version="m2")
        con.execute(
            "update scoring_runs set started_at = timestamp '2026-11-28 01:00:00' where run_id like 'R20261128%'"
        )
        con.close()
    else:
        _next_run(settings, "R20261128T010000Z-bbbbbb", new=20, changed=50, removed=10)
    reader = psycopg.connect(pg_server.url())
    reader.isolation_level = getattr(psycopg.IsolationLevel, isolation)
    try:
        reader.execute("select 1").fetchall()  # the snapshot is taken here; the table is read only later

        result = publish_segments(settings, pg_server.url(), table, full=mode != "incremental")

        assert result["mode"] == ("incremental" if mode == "incremental" else "full")
        assert (result["deleted"] == 400) == (mode == "rewrite")
        assert reader.execute(f'select * from "{table}" order by customer_id').fetchall() == before
        assert reader.execute(f'select run_id from "{table}_runs" where is_current').fetchall() == [
            ("R20261127T010000Z-aaaaaa",)
        ]
    finally:
        reader.rollback()
        reader.close()
    _assert_target_equals_segments(settings, pg_server, table)  # a new reader sees the new rows
    assert len(_pg_rows(pg_server, table)) == (400 if mode == "rewrite" else 410)


@pytest.mark.postgres
def test_a_reader_holding_the_table_does_not_block_a_publish(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 300)
    publish_segments(settings, pg_server.url(), "seg_busy")
    reader = psycopg.connect(pg_server.url())  # an open transaction that has read the table (ACCESS SHARE)
    reader.execute("select count(*) from seg_busy").fetchall()
    try:
        for day, mode in ((28, "incremental"), (29, "full")):
            _next_run(settings, f"R202611{day}T010000Z-dddddd", new=5, changed=20, removed=5)
            args = ["publish", "--to", pg_server.url(), "--table", "seg_busy", "--lock-timeout", "0.5", "--json"]
            result = _cli(settings, *args, *(["--full"] if mode == "full" else []))
            assert result.exit_code == 0, result.output
            assert json.loads(result.stdout)["mode"] == mode
            _assert_target_equals_segments(settings, pg_server, "seg_busy")
        assert reader.execute("select count(*) from seg_busy").fetchall() == [(300,)]
    finally:
        reader.rollback()
        reader.close()


class _Blocker:
    """A trigger on the target that makes a publish wait (on an advisory lock the test holds) after writing rows."""

    KEY = 4242

    def __init__(self, server, table):
        self.server, self.table = server, table
        self.holder = psycopg.connect(server.dsn(), autocommit=True)
        self.holder.execute(
            "create or replace function mallscore_test_block() returns trigger language plpgsql as "
            f"$$ begin perform pg_advisory_xact_lock({self.KEY}); return null; end $$"
        )
        self.holder.execute(
            f"create trigger block after insert on {table} for each statement execute function mallscore_test_block()"
        )
        self.holder.execute("select pg_advisory_lock(%s)", [self.KEY])

    def wait_until_blocked(self, proc=None):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            waiting = self.holder.execute(
                "select count(*) from pg_stat_activity where usename = 'mallscore_app' and wait_event = 'advisory'"
            ).fetchall()[0][0]
            if waiting:
                return
            assert proc is None or proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        pytest.fail("the publisher never reached the trigger")

    def release(self):
        self.holder.execute("select pg_advisory_unlock_all()")

    def close(self):
        self.release()
        self.holder.execute(f"drop trigger if exists block on {self.table}")
        self.holder.close()


def _pg_dump(server, table) -> list[str]:
    """The data rows of ``table`` as pg_dump writes them (the server's own pg_dump binary)."""
    pg_dump = Path(os.path.realpath(server.bin_dir / "pg_ctl")).parent / "pg_dump"
    proc = subprocess.run(
        [str(pg_dump), "--data-only", "-t", table, "-h", "127.0.0.1", "-p", str(server.port), "-U", APP_USER, DATABASE],
        env={**os.environ, "PGPASSWORD": APP_PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("COPY "))
    return lines[start + 1 : lines.index("\\.", start)]


@pytest.mark.postgres
def test_pg_dump_during_a_publish_holds_a_whole_table(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 1000)
    publish_segments(settings, pg_server.url(), "seg_dump")
    before = _pg_dump(pg_server, "seg_dump")
    _next_run(settings, "R20261128T010000Z-bbbbbb", new=30, changed=80, removed=20)
    blocker = _Blocker(pg_server, "seg_dump")
    results: list = []
    publisher = threading.Thread(
        target=lambda: results.append(publish_segments(settings, pg_server.url(), "seg_dump", full=False))
    )
    try:
        publisher.start()
        blocker.wait_until_blocked()  # rows updated and inserted, not committed

        during = _pg_dump(pg_server, "seg_dump")

        assert during == before and len(during) == 1000
        blocker.release()
        publisher.join(30)
    finally:
        blocker.close()
        publisher.join(30)
    assert results and results[0]["mode"] == "incremental"
    after = _pg_dump(pg_server, "seg_dump")
    assert len(after) == 1010 and after != before
    assert sum(line.split("\t")[5] == "m2" for line in after) == 30 + 80


@pytest.mark.postgres
def test_failure_mid_publish_leaves_the_old_rows_to_a_reader_holding_them(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 2000)
    publish_segments(settings, pg_server.url(), "seg_fail")
    before = _pg_rows(pg_server, "seg_fail")
    con = duckdb.connect(str(settings.warehouse))
    fill_segments(con, "R20261128T010000Z-cccccc", model_version="m2")  # tomorrow's run, never published

    reader = psycopg.connect(pg_server.url())  # holds the old table in an open transaction
    assert reader.execute("select count(*) from seg_fail").fetchall() == [(2000,)]
    try:
        for full in (False, True):
            with pytest.raises(_Injected):
                publish_from(
                    con, pg_server.url(), "seg_fail", full=full, batch_rows=500, on_batch=_fail_after_first_batch
                )
            assert reader.execute("select * from seg_fail order by customer_id").fetchall() == before
    finally:
        reader.rollback()
        reader.close()
        con.close()
    assert _pg_rows(pg_server, "seg_fail") == before
    with _pg(pg_server) as c:
        assert c.execute("select run_id, is_current from seg_fail_runs").fetchall() == [
            ("R20261127T010000Z-aaaaaa", True)
        ]


@pytest.mark.postgres
def test_a_constraint_failing_on_the_target_rolls_back_every_row(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 400)
    publish_segments(settings, pg_server.url(), "seg_check")
    with _pg(pg_server) as c:  # checked only for rows written from now on: customer 101 is among the changed ones
        c.execute("alter table seg_check add constraint no_101 check (customer_id <> 101) not valid")
    before = _pg_rows(pg_server, "seg_check")
    _next_run(settings, "R20261128T010000Z-bbbbbb", new=5, changed=150, removed=5)

    result = _cli(settings, "publish", "--to", pg_server.url(), "--table", "seg_check")

    assert result.exit_code == 65, result.output
    assert "no_101" in result.stderr and "nothing was changed" in result.stderr
    assert _pg_rows(pg_server, "seg_check") == before
    with _pg(pg_server) as c:
        assert c.execute("select run_id from seg_check_runs where is_current").fetchall() == [
            ("R20261127T010000Z-aaaaaa",)
        ]


@pytest.mark.postgres
def test_bad_rows_in_segments_fail_at_the_key_and_publish_nothing(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 300)
    publish_segments(settings, pg_server.url(), "seg_dupe")
    before = _pg_rows(pg_server, "seg_dupe")
    con = duckdb.connect(str(settings.warehouse))
    con.execute("insert into segments select * from segments where customer_id = 7")
    con.close()

    result = _cli(settings, "publish", "--to", pg_server.url(), "--table", "seg_dupe")

    assert result.exit_code == 65, result.output
    assert "constraint" in result.stderr and APP_PASSWORD not in result.output
    assert _pg_rows(pg_server, "seg_dupe") == before


@pytest.mark.postgres
def test_killed_publisher_leaves_the_old_table(tmp_path, pg_server):
    """SIGKILL the publish process after it rewrote every row, before commit: nothing changes."""
    settings = warehouse_with_segments(tmp_path, 3000)
    publish_segments(settings, pg_server.url(), "seg_kill")
    before = _pg_rows(pg_server, "seg_kill")
    con = duckdb.connect(str(settings.warehouse))
    fill_segments(con, "R20261128T010000Z-eeeeee", model_version="m2")
    con.close()
    blocker = _Blocker(pg_server, "seg_kill")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from mallscore.cli import main; main()",
            "--warehouse",
            str(settings.warehouse),
            "publish",
            "--to",
            pg_server.url(),
            "--table",
            "seg_kill",
            "--full",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        blocker.wait_until_blocked(proc)  # every row deleted and copied again, not committed
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        blocker.close()
        if proc.poll() is None:
            proc.kill()
    # the orphaned backend aborts once the lock frees; wait for it to go
    with _pg(pg_server) as c:
        deadline = time.monotonic() + 20
        while (
            c.execute(
                "select count(*) from pg_stat_activity where usename = 'mallscore_app' and state <> 'idle' "
                "and pid <> pg_backend_pid()"
            ).fetchall()[0][0]
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
    assert _pg_rows(pg_server, "seg_kill") == before
    with _pg(pg_server) as c:
        assert c.execute("select run_id from seg_kill_runs where is_current").fetchall() == [
            ("R20261127T010000Z-aaaaaa",)
        ]


# --- credentials and errors -------------------------------------------------------------


@pytest.mark.postgres
def test_password_from_pgpassword_and_pgpass_and_never_shown(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 100)
    no_password = pg_server.url(password=None)
    via_env = _cli(
        settings,
        "publish",
        "--table",
        "seg_cred",
        "--json",
        env={"MALLSCORE_PUBLISH_URL": no_password, "PGPASSWORD": APP_PASSWORD},
    )
    assert via_env.exit_code == 0, via_env.output
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{pg_server.port}:*:mallscore_app:{APP_PASSWORD.replace(':', chr(92) + ':')}\n")
    pgpass.chmod(0o600)
    via_pgpass = _cli(
        settings,
        "publish",
        "--to",
        no_password,
        "--table",
        "seg_cred",
        env={"PGPASSFILE": str(pgpass), "PGPASSWORD": None},
    )
    assert via_pgpass.exit_code == 0, via_pgpass.output
    in_url = _cli(settings, "publish", "--to", pg_server.url(), "--table", "seg_cred", "--json")
    assert in_url.exit_code == 0

    for result in (via_env, via_pgpass, in_url):
        assert APP_PASSWORD not in result.output and "s3cret" not in result.output
    assert '"target": "postgresql://mallscore_app:***@127.0.0.1' in in_url.stdout
    with _pg(pg_server) as c:
        published = repr(c.execute("select * from seg_cred_runs").fetchall())
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    warehouse = repr(con.execute("select * from scoring_runs").fetchall())
    con.close()
    assert "s3cret" not in published and "s3cret" not in warehouse


@pytest.mark.postgres
@pytest.mark.parametrize(
    "case, code, words",
    [
        ("unreachable", 75, "retry later"),
        ("bad_password", 78, "authentication failed"),
        ("no_database", 78, "does not exist"),
        ("no_permission", 78, "permission denied"),
        ("bad_table_name", 2, "not allowed"),
    ],
)
def test_publish_errors_are_one_masked_line_with_their_exit_code(tmp_path, pg_server, case, code, words):
    settings = warehouse_with_segments(tmp_path, 50)
    url, table = pg_server.url(), "seg_errors"
    if case == "unreachable":
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        url = url.replace(f":{pg_server.port}/", f":{closed_port}/")
    elif case == "bad_password":
        url = pg_server.url(password="wrong-" + APP_PASSWORD)
    elif case == "no_database":
        url = pg_server.url(database="no_such_db")
    elif case == "no_permission":
        table = "locked.seg_errors"
    elif case == "bad_table_name":
        table = "seg; drop table x; --"

    result = _cli(settings, "publish", "--to", url, "--table", table)

    assert result.exit_code == code, result.output
    assert words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "s3cret" not in result.output and "Traceback" not in result.output
    with _pg(pg_server) as c:
        assert c.execute("select to_regclass('seg_errors'), to_regclass('locked.seg_errors')").fetchall() == [
            (None, None)
        ]


# --- generic SQLAlchemy path (a real SQLite file) -----------------------------------------


def _sqlite_rows(path, table="seg"):
    return sqlite3.connect(path).execute(f"select * from {table} order by customer_id").fetchall()


def test_generic_path_publishes_incrementally_and_rolls_back_on_sqlite(tmp_path):
    settings = warehouse_with_segments(tmp_path, 700)
    target = tmp_path / "campaign.sqlite"
    url = f"sqlite:///{target}"
    first = publish_segments(settings, url, "seg")
    assert (first["method"], first["mode"], first["rows"]) == ("insert", "full", 700)
    before = _sqlite_rows(target)
    con = duckdb.connect(str(settings.warehouse))
    fill_segments(con, "R20261128T010000Z-ffffff", model_version="m2")
    try:
        for full in (False, True):
            with pytest.raises(_Injected):
                publish_from(con, url, "seg", full=full, batch_rows=200, on_batch=_fail_after_first_batch)
    finally:
        con.close()
    assert _sqlite_rows(target) == before
    assert len(before) == 700 and before[0][0] == 1
    second = publish_segments(settings, url, "seg")
    assert (second["mode"], second["run_ids"], second["updated"]) == ("incremental", ["R20261128T010000Z-ffffff"], 700)
    assert sqlite3.connect(target).execute("select count(*), min(model_version) from seg").fetchall() == [(700, "m2")]

    _next_run(settings, "R20261129T010000Z-gggggg", new=7, changed=50, removed=9)
    third = publish_segments(settings, url, "seg")
    assert (third["mode"], third["inserted"], third["updated"], third["deleted"]) == ("incremental", 7, 50, 9)
    segments = _duck_rows(settings)
    published = [(*r[:3], bool(r[3]), *r[4:7]) for r in _sqlite_rows(target)]  # SQLite stores booleans as 0/1
    assert published == [r[:7] for r in segments]
    incremental = _sqlite_rows(target)
    full = publish_segments(settings, url, "seg", full=True)
    assert (full["mode"], full["deleted"], full["inserted"]) == ("full", 698, 698)
    assert _sqlite_rows(target) == incremental and len(incremental) == 698
    assert sqlite3.connect(target).execute("select run_id from seg_runs where is_current").fetchall() == [
        ("R20261129T010000Z-gggggg",)
    ]


def test_publish_without_table_writes_to_mallscore_publish_table(tmp_path):
    settings = warehouse_with_segments(tmp_path, 30)
    target = tmp_path / "campaign.sqlite"

    result = _cli(
        settings,
        "publish",
        "--to",
        f"sqlite:///{target}",
        "--json",
        env={"MALLSCORE_PUBLISH_TABLE": "from_env_segments"},
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["table"] == "from_env_segments"
    names = sqlite3.connect(target).execute("select name from sqlite_master where type = 'table' order by name")
    assert names.fetchall() == [("from_env_segments",), ("from_env_segments_changes",), ("from_env_segments_runs",)]
    assert len(_sqlite_rows(target, "from_env_segments")) == 30


def test_publishing_an_empty_segments_table_is_refused(tmp_path):
    settings = warehouse_with_segments(tmp_path, 0)
    result = _cli(settings, "publish", "--to", f"sqlite:///{tmp_path / 'x.sqlite'}")
    assert result.exit_code == 66 and "no segments to publish" in result.stderr
    assert not (tmp_path / "x.sqlite").exists() or sqlite3.connect(tmp_path / "x.sqlite").execute(
        "select count(*) from sqlite_master"
    ).fetchall() == [(0,)]


def test_no_url_anywhere_is_a_usage_error(tmp_path):
    settings = warehouse_with_segments(tmp_path, 10)
    result = _cli(settings, "publish", env={"MALLSCORE_PUBLISH_URL": ""})
    assert result.exit_code == 2 and "MALLSCORE_PUBLISH_URL" in result.stderr


@pytest.mark.postgres
def test_copy_falls_back_to_csv_for_types_without_a_binary_encoder(pg_server):
    import pyarrow as pa
    from psycopg import sql

    from mallscore import pgcopy

    batch = pa.record_batch(
        {
            "id": pa.array([1, 2], pa.int64()),
            "x": pa.array([0.5, None], pa.float32()),
            "d": pa.array([None, 'Zoë, "quoted"'], pa.string()),
        }
    )
    assert not pgcopy.encodable(batch.schema)
    seen = []
    with psycopg.connect(pg_server.url()) as c:
        c.execute("create temp table fallback (id bigint, x real, d text)")
        with c.cursor() as cur:
            assert pgcopy.copy_in(cur, sql.Identifier("fallback"), iter([batch]), seen.append) == 2
        assert c.execute("select * from fallback order by id").fetchall() == [
            (1, 0.5, None),
            (2, None, 'Zoë, "quoted"'),
        ]
    assert seen == [2]
