"""The read commands (segments, changes, rejected, status) and demo's refusal, through the real CLI.

Read commands open the warehouse read-only: they work while another process
holds it read-only (a writer could not), never create a warehouse, and write
files atomically in every format, read back here with DuckDB. Most calls go
through typer's CliRunner in this process (a subprocess costs about a second of
imports); the lock and missing-warehouse checks use real subprocesses.
"""

from __future__ import annotations

import csv
import io
import json
import stat
from types import SimpleNamespace

import duckdb
import pytest
from typer.testing import CliRunner

from mallscore.cli import app
from mallscore.scoring import score_customers
from mallscore.settings import Settings
from tests.scoring_support import query, run_cli, seed_customers, write_model

SEGMENT_COLUMNS = [
    "customer_id",
    "segment",
    "p_high_spender",
    "predicted_high_spender",
    "basis",
    "model_version",
    "run_id",
    "scored_at",
    "customer_updated_at",
    "behaviour_group",
    "top_reason",
]
CHANGE_COLUMNS = [
    "customer_id",
    "run_id",
    "change",
    "previous_segment",
    "segment",
    "previous_p_high_spender",
    "p_high_spender",
    "previous_predicted_high_spender",
    "predicted_high_spender",
    "scored_at",
    "previous_behaviour_group",
    "behaviour_group",
    "top_reason",
]


def _cli(settings: Settings, *args: object) -> SimpleNamespace:
    """The CLI in this process, against ``settings``: returncode, stdout, stderr like a subprocess."""
    argv = ["--warehouse", str(settings.warehouse), "--models-dir", str(settings.models_dir), *map(str, args)]
    result = CliRunner().invoke(app, argv, env={"MALLSCORE_LOCK_TIMEOUT": "0.5"})
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def _execute(settings: Settings, sql: str) -> None:
    con = duckdb.connect(str(settings.warehouse))
    try:
        con.execute(sql)
    finally:
        con.close()


def _state(settings: Settings) -> dict[int, tuple]:
    """Each segmented customer's (segment, predicted_high_spender): what a campaign tool syncs."""
    rows = query(settings, "select customer_id, segment, predicted_high_spender from segments")
    return {r[0]: (r[1], r[2]) for r in rows}


def _changes(settings: Settings, *args: str) -> tuple[list[str], list[dict]]:
    done = _cli(settings, "changes", "--format", "csv", *args)
    assert done.returncode == 0, done.stderr
    reader = csv.DictReader(io.StringIO(done.stdout))
    return reader.fieldnames, list(reader)


def test_the_feed_through_changes_after_a_rerun_new_customers_and_changed_customers(scored_setup: Settings) -> None:
    first = score_customers(scored_setup, publish=False)
    header, rows = _changes(scored_setup)
    assert header == CHANGE_COLUMNS and len(rows) == 500 and {r["change"] for r in rows} == {"new"}
    assert {r["run_id"] for r in rows} == {first["run_id"]}
    # a rerun changes nothing: a csv header only
    score_customers(scored_setup, publish=False)
    done = _cli(scored_setup, "changes", "--format", "csv")
    assert done.returncode == 0 and done.stdout == ",".join(CHANGE_COLUMNS) + "\n"
    # new customers: exactly they, all new
    seed_customers(scored_setup, known=0, new=7, seed=41)
    score_customers(scored_setup, publish=False)
    _, rows = _changes(scored_setup)
    assert {int(r["customer_id"]) for r in rows} == set(range(501, 508)) and {r["change"] for r in rows} == {"new"}
    # changed customers: exactly those whose segment or label moved, against the segments before and after
    before = _state(scored_setup)
    _execute(scored_setup, "update raw_customers set age = 69, updated_at = updated_at + interval 1 day")
    write_model(scored_setup.models_dir, "v2", seed=5)
    score_customers(scored_setup, publish=False)
    after = _state(scored_setup)
    moved = {c for c in after if after[c] != before[c]}
    _, rows = _changes(scored_setup)
    assert 0 < len(moved) < len(after)
    assert {int(r["customer_id"]) for r in rows} == moved and {r["change"] for r in rows} == {"changed"}
    assert all(
        (r["previous_segment"], r["segment"]) == (before[int(r["customer_id"])][0], after[int(r["customer_id"])][0])
        for r in rows
    )


def test_since_collapses_several_runs_to_each_customers_net_change(scored_setup: Settings) -> None:
    synced = score_customers(scored_setup, publish=False)["run_id"]
    at_sync = _state(scored_setup)
    # run 2: ten new customers, customer 7's data breaks the contract (removed), customer 9's segment moves
    seed_customers(scored_setup, known=0, new=10, seed=42)
    _execute(
        scored_setup,
        "update raw_customers set age = 95, updated_at = updated_at + interval 1 day where customer_id = 7",
    )
    _execute(
        scored_setup,
        "update raw_customers set age = 69, updated_at = updated_at + interval 1 day where customer_id in (9, 11, 12)",
    )
    score_customers(scored_setup, publish=False)
    # run 3: customer 501 (new in run 2) breaks the contract: it came and went; customer 9 is moved back
    _execute(
        scored_setup,
        "update raw_customers set age = 95, updated_at = updated_at + interval 1 day where customer_id = 501",
    )
    _execute(
        scored_setup,
        "update raw_customers set age = 20, updated_at = updated_at + interval 1 day where customer_id = 12",
    )
    last = score_customers(scored_setup, publish=False)["run_id"]
    now = _state(scored_setup)
    expected = {c: "new" for c in now.keys() - at_sync.keys()}
    expected |= {c: "removed" for c in at_sync.keys() - now.keys()}
    expected |= {c: "changed" for c in now.keys() & at_sync.keys() if now[c] != at_sync[c]}
    assert {"new", "removed"} <= set(expected.values()) and 501 not in expected  # the data has each kind
    header, rows = _changes(scored_setup, "--since", synced)
    assert header == CHANGE_COLUMNS
    assert {int(r["customer_id"]): r["change"] for r in rows} == expected
    for r in rows:
        c = int(r["customer_id"])
        assert r["previous_segment"] == (at_sync[c][0] if c in at_sync else "")
        assert r["segment"] == (now[c][0] if c in now else "")
    # the runs after the latest one: nothing
    assert _changes(scored_setup, "--since", last)[1] == []


def test_every_format_is_written_atomically_and_reads_back(scored_setup: Settings, tmp_path) -> None:
    run = score_customers(scored_setup, publish=False)
    out = tmp_path / "out"
    out.mkdir()
    con = duckdb.connect()
    readers = {"csv": "read_csv", "jsonl": "read_json", "parquet": "read_parquet"}
    for fmt, reader in readers.items():
        path = out / f"segments.{fmt}"
        done = _cli(scored_setup, "segments", "--format", fmt, "--output", path)
        assert done.returncode == 0, done.stderr
        assert f"wrote 500 segments to {path}" in done.stdout
        rel = con.sql(f"select * from {reader}('{path}')")
        assert rel.columns == SEGMENT_COLUMNS and len(rel.fetchall()) == 500, fmt
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        top = _cli(scored_setup, "segments", "--segment", "top", "--limit", "5", "--output", out / f"top.{fmt}")
        assert top.returncode == 0, top.stderr
        assert con.sql(f"select distinct segment from {reader}('{out / f'top.{fmt}'}')").fetchall() == [("top",)]
        assert con.sql(f"select count(*) from {reader}('{out / f'top.{fmt}'}')").fetchall() == [(5,)]
    # csv: a header, ISO-8601 UTC timestamps; jsonl: one object a line, the same columns in the same order
    lines = (out / "segments.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == ",".join(SEGMENT_COLUMNS) and len(lines) == 501
    assert lines[1].split(",")[8].endswith("Z") and "T" in lines[1].split(",")[7]
    first = json.loads((out / "segments.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert list(first) == SEGMENT_COLUMNS and first["run_id"] == run["run_id"]
    # a table for a person: at most 100 rows, and it says so
    assert "3 row(s)" in _cli(scored_setup, "segments", "--format", "table", "--limit", "3").stdout
    assert "the first 100 rows" in _cli(scored_setup, "segments", "--format", "table").stdout
    # standard output gives the same bytes as the file
    assert _cli(scored_setup, "segments", "--format", "csv").stdout == (out / "segments.csv").read_text()
    # the change feed and rejected rows, in every file format
    _execute(
        scored_setup,
        "update raw_customers set age = 95, updated_at = updated_at + interval 1 day where customer_id <= 3",
    )
    bad = score_customers(scored_setup, publish=False)
    for fmt, reader in readers.items():
        for command, args, rows in (("changes", (), 3), ("rejected", ("--run", bad["run_id"]), 3)):
            path = out / f"{command}.{fmt}"
            done = _cli(scored_setup, command, *args, "--format", fmt, "--output", path)
            assert done.returncode == 0, done.stderr
            assert con.sql(f"select count(*) from {reader}('{path}')").fetchall() == [(rows,)], (command, fmt)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temporary names left


def test_read_commands_on_a_missing_warehouse_exit_66_and_create_nothing(settings: Settings, tmp_path) -> None:
    missing = settings.warehouse
    assert run_cli(settings, "status").returncode == 66  # a real process, then the rest in this one
    for args in (("status",), ("segments",), ("changes",), ("rejected",), ("segments", "--snapshot"), ("runs",)):
        done = _cli(settings, *args)
        assert done.returncode == 66, (args, done.stderr)
        assert str(missing.parent) in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not missing.parent.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_read_commands_only_read_while_someone_else_holds_the_warehouse(scored_setup: Settings) -> None:
    score_customers(scored_setup, publish=False)
    before = scored_setup.warehouse.read_bytes()
    reader = duckdb.connect(str(scored_setup.warehouse), read_only=True)  # a writer could not open it now
    try:
        for args in (("status", "--json"), ("changes", "--format", "csv")):
            done = run_cli(scored_setup, *args)  # a real process: the holder's lock is per process
            assert done.returncode == 0, (args, done.stderr)
    finally:
        reader.close()
    assert scored_setup.warehouse.read_bytes() == before
    relations = json.loads(_cli(scored_setup, "status", "--json").stdout)["relations"]
    assert relations["segments"] == 500 and relations["segment_changes"] is None  # not counted: the whole history


@pytest.mark.parametrize(
    "args, message",
    [
        (("changes", "--run", "R1", "--since", "R2"), "not both"),
        (("rejected", "--load", "L1", "--run", "R2"), "not both"),
        (("segments", "--format", "parquet"), "needs --output"),
        (("segments", "--format", "xml"), "unknown format"),
    ],
)
def test_usage_errors_are_exit_2(settings: Settings, args, message) -> None:
    done = _cli(settings, *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_unknown_runs_and_loads_are_exit_66_and_the_warehouse_is_never_an_output(scored_setup: Settings) -> None:
    for args in (("changes", "--run", "R-nope"), ("changes", "--since", "R-nope"), ("rejected", "--load", "L-nope")):
        done = _cli(scored_setup, *args)
        assert done.returncode == 66 and "nope" in done.stderr, (args, done.stderr)
    done = _cli(scored_setup, "segments", "--output", scored_setup.warehouse)
    assert done.returncode == 2 and "warehouse" in done.stderr
    assert query(scored_setup, "select count(*) from raw_customers") == [(500,)]


def test_demo_refuses_a_warehouse_with_customers_or_models_with_a_champion(scored_setup: Settings, tmp_path) -> None:
    other_models = Settings(warehouse=scored_setup.warehouse, models_dir=tmp_path / "empty-models")
    done = _cli(other_models, "demo", "--rows", "50", "--new-rows", "0")
    assert done.returncode == 2 and "already holds 500 customers" in done.stderr, done.stderr
    assert query(scored_setup, "select count(*) from raw_customers") == [(500,)]
    assert not (tmp_path / "empty-models").exists()
    empty_warehouse = Settings(warehouse=tmp_path / "empty" / "w.duckdb", models_dir=scored_setup.models_dir)
    done = _cli(empty_warehouse, "demo", "--rows", "50", "--new-rows", "0")
    assert done.returncode == 2 and "already has a champion" in done.stderr, done.stderr
    assert not empty_warehouse.warehouse.exists()


def test_snapshot_reads_never_touch_the_warehouse(scored_setup: Settings) -> None:
    score_customers(scored_setup)  # publishes the snapshot
    writer = duckdb.connect(str(scored_setup.warehouse))  # the nightly job, say: nobody else may open it now
    try:
        writer.execute("delete from segments where customer_id <= 100")
        done = _cli(scored_setup, "segments", "--snapshot", "--format", "csv")
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.splitlines()) == 501  # last night's segments, from the snapshot
    finally:
        writer.close()


def test_an_export_connection_may_write_its_output_and_nothing_else(con, settings: Settings, tmp_path) -> None:
    from mallscore.warehouse import connect

    con.close()
    allowed, other = tmp_path / "allowed.csv", tmp_path / "other.csv"
    limited = connect(settings.warehouse, read_only=True, allowed_paths=[allowed])
    try:
        limited.execute(f"copy (select 1 as x) to '{allowed}'")
        for sql in (f"copy (select 1 as x) to '{other}'", "set enable_external_access = true"):
            with pytest.raises(duckdb.Error):
                limited.execute(sql)
    finally:
        limited.close()
    assert allowed.exists() and not other.exists()
