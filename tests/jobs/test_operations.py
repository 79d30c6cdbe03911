"""Backup, restore, a damaged warehouse, and file permissions, through the real CLI."""

import hashlib
import json
import os
import shutil
import stat

import duckdb

from mallscore.warehouse import sql_files


def all_tables(path):
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [f.relation for f in sql_files()]
        return {t: sorted(con.execute(f'select * from "{t}"').fetchall(), key=repr) for t in tables}
    finally:
        con.close()


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_backup_restore_round_trip_compares_every_table(cli, settings, tmp_path):
    assert cli("synth", "--rows", "300").returncode == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)\n9999,Robot,30,1,1\n")
    assert cli("ingest", bad).returncode == 0
    before = all_tables(settings.warehouse)
    out = cli("backup", tmp_path / "bk" / "copy.duckdb", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["sha256"] == digest(tmp_path / "bk" / "copy.duckdb")
    # the night goes on: more data arrives after the backup
    assert cli("synth", "--rows", "50", "--new").returncode == 0
    assert all_tables(settings.warehouse) != before
    out = cli("restore", tmp_path / "bk" / "copy.duckdb")
    assert out.returncode == 0, out.stderr
    assert all_tables(settings.warehouse) == before
    assert settings.warehouse.with_name(settings.warehouse.name + ".before-restore").exists()


def test_restore_refuses_a_file_that_is_not_a_database(cli, settings, tmp_path):
    assert cli("synth", "--rows", "10").returncode == 0
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(os.urandom(5000))
    before = digest(settings.warehouse)
    out = cli("restore", junk)
    assert out.returncode == 78 and "not a readable DuckDB database" in out.stderr
    assert digest(settings.warehouse) == before
    assert cli("restore", tmp_path / "missing.duckdb").returncode == 66


def test_damaged_wal_exits_78_and_leaves_files_untouched(cli, settings, tmp_path):
    assert cli("synth", "--rows", "10").returncode == 0
    # Leave committed work in the WAL, as after a crash: copy the files while a writer has them open.
    con = duckdb.connect(str(settings.warehouse))
    con.execute(
        "insert into raw_customers select customer_id + 1000, gender, age, annual_income, spending_score, load_id, updated_at from raw_customers"
    )
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    shutil.copy(settings.warehouse, crashed / "w.duckdb")
    shutil.copy(str(settings.warehouse) + ".wal", crashed / "w.duckdb.wal")
    con.close()
    wal = bytearray((crashed / "w.duckdb.wal").read_bytes())
    wal[len(wal) // 2] ^= 0xFF  # a flipped byte in the middle of the WAL
    (crashed / "w.duckdb.wal").write_bytes(bytes(wal))
    sums = {p.name: digest(p) for p in crashed.iterdir()}
    out = cli("--warehouse", crashed / "w.duckdb", "status")
    assert out.returncode == 78, out.stderr
    assert "is damaged" in out.stderr and "Traceback" not in out.stderr
    assert {p.name: digest(p) for p in crashed.iterdir()} == sums


def test_files_are_private_to_their_owner(cli, settings, tmp_path):
    assert cli("synth", "--rows", "10").returncode == 0
    assert cli("backup", tmp_path / "b" / "copy.duckdb").returncode == 0
    for path in (settings.warehouse, tmp_path / "b" / "copy.duckdb"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(settings.warehouse.parent.stat().st_mode) == 0o700


def test_external_file_access_is_disabled_on_warehouse_connections(con, tmp_path):
    import pytest

    target = tmp_path / "leak.csv"
    with pytest.raises(duckdb.Error):
        con.execute(f"copy raw_customers to '{target}'")
    assert not target.exists()
