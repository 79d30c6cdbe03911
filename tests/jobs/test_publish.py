"""publish: to a real PostgreSQL server (COPY path) and a real SQLite file (generic path)."""

from __future__ import annotations

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
from tests.pg_server import APP_PASSWORD

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


def _stage_tables(server, table):
    with _pg(server) as c:
        return c.execute("select relname from pg_class where relname like %s", [table + "__stage%"]).fetchall()


@pytest.mark.postgres
def test_publish_twice_gives_the_same_tables_and_exact_values(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 3000)
    first = publish_segments(settings, pg_server.url(), "seg_twice")
    rows_first = _pg_rows(pg_server, "seg_twice")
    second = publish_segments(settings, pg_server.url(), "seg_twice")
    rows_second = _pg_rows(pg_server, "seg_twice")

    assert first["rows"] == second["rows"] == 3000 and first["method"] == "copy"
    assert rows_first == rows_second == _duck_rows(settings)  # bit-exact doubles, same timestamps
    with _pg(pg_server) as c:
        runs = c.execute("select run_id, status, rows_scored from seg_twice_runs").fetchall()
        pkey = c.execute(
            "select conname from pg_constraint where conrelid = 'seg_twice'::regclass and contype = 'p'"
        ).fetchall()
    assert runs == [("R20261127T010000Z-aaaaaa", "ok", 3000)]
    assert pkey == [("seg_twice_pkey",)]
    assert _stage_tables(pg_server, "seg_twice") == []


@pytest.mark.postgres
def test_a_new_run_replaces_the_table_and_keeps_grants(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 500)
    publish_segments(settings, pg_server.url(), "seg_grants")
    with _pg(pg_server) as c:
        c.execute("grant select on seg_grants to mallscore_reader")
    con = duckdb.connect(str(settings.warehouse))
    con.execute("delete from raw_customers where customer_id > 400")
    fill_segments(con, "R20261128T010000Z-bbbbbb", model_version="m2")
    con.close()

    result = publish_segments(settings, pg_server.url(), "seg_grants")

    assert result["run_ids"] == ["R20261128T010000Z-bbbbbb"]
    reader_url = pg_server.url(user="mallscore_reader", password="reader-pw")
    with psycopg.connect(reader_url) as c:  # the campaign tool's role still reads the new table
        assert c.execute("select count(*), min(model_version), max(model_version) from seg_grants").fetchall() == [
            (400, "m2", "m2")
        ]
    with _pg(pg_server) as c:
        runs = c.execute("select run_id from seg_grants_runs order by run_id").fetchall()
    assert runs == [("R20261127T010000Z-aaaaaa",), ("R20261128T010000Z-bbbbbb",)]


class _Injected(RuntimeError):
    pass


def _fail_after_first_batch(rows):
    raise _Injected(f"injected failure after {rows} rows")


@pytest.mark.postgres
def test_failure_mid_publish_leaves_the_old_table_to_a_reader_holding_it(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 2000)
    publish_segments(settings, pg_server.url(), "seg_fail")
    before = _pg_rows(pg_server, "seg_fail")
    con = duckdb.connect(str(settings.warehouse))
    fill_segments(con, "R20261128T010000Z-cccccc", model_version="m2")  # tomorrow's run, never published

    reader = psycopg.connect(pg_server.url())  # holds the old table in an open transaction
    assert reader.execute("select count(*) from seg_fail").fetchall() == [(2000,)]
    try:
        with pytest.raises(_Injected):
            publish_from(con, pg_server.url(), "seg_fail", batch_rows=500, on_batch=_fail_after_first_batch)
        # the reader, still inside its transaction, reads yesterday's rows
        assert reader.execute("select * from seg_fail order by customer_id").fetchall() == before
    finally:
        reader.rollback()
        reader.close()
        con.close()
    assert _pg_rows(pg_server, "seg_fail") == before
    with _pg(pg_server) as c:
        assert c.execute("select run_id from seg_fail_runs").fetchall() == [("R20261127T010000Z-aaaaaa",)]
    assert _stage_tables(pg_server, "seg_fail") == []


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
def test_reader_holding_the_table_past_the_lock_timeout_gives_75_and_keeps_the_old_table(tmp_path, pg_server):
    settings = warehouse_with_segments(tmp_path, 300)
    publish_segments(settings, pg_server.url(), "seg_busy")
    before = _pg_rows(pg_server, "seg_busy")
    con = duckdb.connect(str(settings.warehouse))
    fill_segments(con, "R20261128T010000Z-dddddd", model_version="m2")
    con.close()
    reader = psycopg.connect(pg_server.url())
    reader.execute("select count(*) from seg_busy").fetchall()
    released = threading.Event()

    def let_go() -> None:  # a reader that ends eventually: a publisher waiting for it would then succeed (exit 0)
        released.set()
        reader.rollback()

    watchdog = threading.Timer(60, let_go)
    watchdog.start()
    try:
        result = _cli(settings, "publish", "--to", pg_server.url(), "--table", "seg_busy", "--lock-timeout", "0.5")
        watchdog.cancel()
        assert not released.is_set()  # it gave up while the reader still held the table
        assert result.exit_code == 75, result.output
        assert "retry later" in result.stderr and "lock timeout" in result.stderr
        assert reader.execute("select * from seg_busy order by customer_id").fetchall() == before
    finally:
        watchdog.cancel()
        watchdog.join()
        reader.rollback()
        reader.close()
    assert _pg_rows(pg_server, "seg_busy") == before


@pytest.mark.postgres
def test_killed_publisher_leaves_the_old_table(tmp_path, pg_server):
    """SIGKILL the publish process while it waits to swap (a reader holds the table): nothing changes."""
    settings = warehouse_with_segments(tmp_path, 20_000)
    publish_segments(settings, pg_server.url(), "seg_kill")
    before = _pg_rows(pg_server, "seg_kill")
    con = duckdb.connect(str(settings.warehouse))
    fill_segments(con, "R20261128T010000Z-eeeeee", model_version="m2")
    con.close()
    reader = psycopg.connect(pg_server.url())
    reader.execute("select count(*) from seg_kill").fetchall()
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
            "--lock-timeout",
            "60",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        with _pg(pg_server) as c:  # wait until the publisher has loaded everything and waits for the lock
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                waiting = c.execute(
                    "select count(*) from pg_stat_activity where usename = 'mallscore_app' and wait_event_type = 'Lock'"
                ).fetchall()[0][0]
                if waiting:
                    break
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.05)
            else:
                pytest.fail("the publisher never reached the swap")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert reader.execute("select * from seg_kill order by customer_id").fetchall() == before
    finally:
        reader.rollback()
        reader.close()
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
    assert _stage_tables(pg_server, "seg_kill") == []


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


def test_generic_path_publishes_and_rolls_back_on_sqlite(tmp_path):
    settings = warehouse_with_segments(tmp_path, 700)
    target = tmp_path / "campaign.sqlite"
    url = f"sqlite:///{target}"
    first = publish_segments(settings, url, "seg")
    assert first["method"] == "insert" and first["rows"] == 700
    before = sqlite3.connect(target).execute("select * from seg order by customer_id").fetchall()
    con = duckdb.connect(str(settings.warehouse))
    fill_segments(con, "R20261128T010000Z-ffffff", model_version="m2")
    try:
        with pytest.raises(_Injected):
            publish_from(con, url, "seg", batch_rows=200, on_batch=_fail_after_first_batch)
    finally:
        con.close()
    check = sqlite3.connect(target)
    assert check.execute("select * from seg order by customer_id").fetchall() == before
    assert check.execute("select name from sqlite_master where name like 'seg__stage%'").fetchall() == []
    assert len(before) == 700 and before[0][0] == 1
    assert publish_segments(settings, url, "seg")["run_ids"] == ["R20261128T010000Z-ffffff"]
    assert sqlite3.connect(target).execute("select count(*), min(model_version) from seg").fetchall() == [(700, "m2")]


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
    from mallscore.publish import _copy_batches

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
            assert _copy_batches(cur, sql.Identifier("fallback"), iter([batch]), seen.append) == 2
        assert c.execute("select * from fallback order by id").fetchall() == [
            (1, 0.5, None),
            (2, None, 'Zoë, "quoted"'),
        ]
    assert seen == [2]
