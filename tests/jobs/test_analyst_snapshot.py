"""The analyst snapshot for analysts' own clients and accounts: older DuckDB clients, a group, file modes.

Real parts: duckdb 1.1.3 and the DuckDB CLI 1.5.6 in their own virtual
environment (tests/analyst_support.py), real unix accounts made with
groupadd/useradd and commands run as them with runuser, real scoring runs.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from mallscore.scoring import score_customers
from mallscore.settings import Settings
from mallscore.snapshot import PORTABLE_STORAGE_NUMBER, storage_number
from mallscore.warehouse import create_database
from tests.analyst_support import old_clients, read_with_old_python, readme_analyst_queries, run_as
from tests.scoring_support import query, run_cli, seed_customers, write_model

ROOT = os.geteuid() == 0


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_older_client_opens_the_snapshot_and_runs_the_readme_queries(scored_setup: Settings) -> None:
    write_model(scored_setup.models_dir, "v2", reference=True)  # top_reason: an ENUM column (mallscore.labels)
    score_customers(scored_setup)
    snapshot = scored_setup.snapshot
    # the warehouse is created in the old format, so the snapshot is a plain copy of it
    assert storage_number(scored_setup.warehouse) == storage_number(snapshot) == PORTABLE_STORAGE_NUMBER
    queries = readme_analyst_queries()
    assert len(queries) >= 5 and any("segment_changes" in q for q in queries)
    reasons = "select * from segments where top_reason like '%: %' and top_reason = top_reason::varchar"
    enum_type = query(
        scored_setup,
        "select data_type from duckdb_columns() where column_name = 'top_reason' and table_name = 'segments'",
    )[0][0]
    assert enum_type.startswith("ENUM(")
    result = read_with_old_python(old_clients(), snapshot, [*queries, reasons])
    assert result["rows"][-1] == query(scored_setup, "select count(top_reason) from segments")[0][0] > 0
    result["rows"].pop()
    assert result["version"] == "1.1.3"
    assert result["segments"] == query(scored_setup, "select count(*) from segments")[0][0] == 500
    rows = dict(zip(queries, result["rows"]))
    assert rows["select * from segment_summary"] == 3  # one row per tier of the test model
    feed = next(q for q in queries if "from segment_changes" in q)
    assert rows[feed] == 3  # last night's changes: 'new' into each of the three tiers


def test_a_warehouse_in_the_new_format_gets_a_re_encoded_snapshot_and_migrates_by_restoring_it(
    score_settings: Settings,
) -> None:
    # a warehouse created before this version: DuckDB 2.0's own format, which no 1.x client reads
    score_settings.warehouse.parent.mkdir(mode=0o700)
    create_database(score_settings.warehouse, "latest")
    seed_customers(score_settings)
    write_model(score_settings.models_dir, "v1")
    score_customers(score_settings)
    assert storage_number(score_settings.warehouse) != PORTABLE_STORAGE_NUMBER
    assert storage_number(score_settings.snapshot) == PORTABLE_STORAGE_NUMBER
    clients = old_clients()
    assert read_with_old_python(clients, score_settings.snapshot, ["select * from segment_changes"]) == {
        "version": "1.1.3",
        "rows": [500],
        "segments": 500,
    }
    # the one-time migration (README): restore the fresh snapshot over the warehouse
    before = query(score_settings, "select (select count(*) from raw_customers), (select count(*) from scoring_runs)")
    done = run_cli(score_settings, "restore", score_settings.snapshot)
    assert done.returncode == 0, done.stderr
    assert storage_number(score_settings.warehouse) == PORTABLE_STORAGE_NUMBER
    assert query(
        score_settings, "select (select count(*) from raw_customers), (select count(*) from scoring_runs)"
    ) == (before)
    seed_customers(score_settings, known=0, new=5, seed=77)
    run = score_customers(score_settings)
    assert run["rows_scored"] == 5 and storage_number(score_settings.snapshot) == PORTABLE_STORAGE_NUMBER
    assert read_with_old_python(clients, score_settings.snapshot, [])["segments"] == 505


# --- analysts under their own accounts ---------------------------------------------------------------


@pytest.fixture(scope="module")
def accounts():
    """A group with one analyst in it and one user outside it, removed afterwards."""
    if not ROOT or not shutil.which("useradd") or not shutil.which("runuser"):
        pytest.skip("needs root with useradd and runuser (CI runs as root)")
    tag = uuid.uuid4().hex[:6]
    group, analyst, outsider = f"msg{tag}", f"msa{tag}", f"mso{tag}"
    subprocess.run(["groupadd", group], check=True)
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", "-G", group, analyst], check=True)
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", outsider], check=True)
    try:
        yield {"group": group, "analyst": analyst, "outsider": outsider}
    finally:
        for user in (analyst, outsider):
            subprocess.run(["userdel", user], capture_output=True)
        subprocess.run(["groupdel", group], capture_output=True)


@pytest.fixture
def shared_folder():
    """A folder outside the root-only pytest tmp dirs that other accounts can pass through (0711)."""
    folder = Path(tempfile.mkdtemp(prefix="mallscore-analysts-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_analysts_group_reads_the_snapshot_and_exports_and_nobody_else_does(
    scored_setup: Settings, accounts: dict, shared_folder: Path
) -> None:
    share = shared_folder / "analyst"
    share.mkdir()
    share.chmod(0o755)  # even in a folder everyone may enter, the files themselves keep others out
    env = {"MALLSCORE_ANALYST_PATH": str(share / "mall.duckdb"), "MALLSCORE_ANALYST_GROUP": accounts["group"]}
    done = run_cli(scored_setup, "score", **env)
    assert done.returncode == 0, done.stderr
    snapshot = share / "mall.duckdb"
    assert "snapshot " + str(snapshot) in done.stdout and not scored_setup.snapshot.exists()
    export = share / "segments.csv"
    done = run_cli(scored_setup, "segments", "--output", export, **env)
    assert done.returncode == 0, done.stderr
    group_id = int(
        subprocess.run(["getent", "group", accounts["group"]], capture_output=True, text=True).stdout.split(":")[2]
    )
    for path in (snapshot, export):
        assert _mode(path) == 0o640 and path.stat().st_gid == group_id, path
    # the analyst opens the snapshot with their own DuckDB CLI (1.5.6) and reads the export
    cli = shared_folder / "duckdb"
    _link_or_copy(old_clients().cli, cli)
    read = run_as(
        accounts["analyst"], cli, "-readonly", "-csv", "-noheader", snapshot, "-c", "select count(*) from segments"
    )
    assert read.returncode == 0 and read.stdout.strip() == "500", read.stderr
    assert run_as(accounts["analyst"], "head", "-c", "9", export).stdout == "customer_"
    # the user outside the group can enter the folder but read neither file
    for path in (snapshot, export):
        denied = run_as(accounts["outsider"], "head", "-c", "9", path)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, path
    denied = run_as(accounts["outsider"], cli, "-readonly", snapshot, "-c", "select 1")
    assert denied.returncode != 0
    # the warehouse, its folder, the models and a backup stay the owner's alone whatever the group setting
    assert _mode(scored_setup.warehouse) == 0o600 and _mode(scored_setup.warehouse.parent) == 0o700
    wal = scored_setup.warehouse.with_name(scored_setup.warehouse.name + ".wal")
    assert not wal.exists() or _mode(wal) == 0o600
    backup = scored_setup.warehouse.parent / "backup.duckdb"
    assert run_cli(scored_setup, "backup", backup, **env).returncode == 0
    assert _mode(backup) == 0o600
    assert {_mode(p) for p in scored_setup.models_dir.rglob("*") if p.is_file()} == {0o600}


def _link_or_copy(src: Path, dest: Path) -> None:
    """The cached CLI binary where the analyst can run it: a hard link (no copy) when on the same disk."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def test_an_unknown_analyst_group_is_a_configuration_error(tmp_path: Path) -> None:
    from mallscore.errors import ConfigError
    from mallscore.snapshot import analyst_group_id

    assert analyst_group_id(Settings()) is None
    assert analyst_group_id(Settings(analyst_group="root")) == 0
    with pytest.raises(ConfigError, match="no-such-group-x.*not a group"):
        analyst_group_id(Settings(analyst_group="no-such-group-x"))
