"""A damaged warehouse is 78 for every command, with one line and its files untouched; odd names and values are 2.

The warehouse is real (customers, a champion, a scored run), then truncated or
given flipped bytes inside a data block, as a disk error would. Commands run
in-process through typer's CliRunner (one import, many calls).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

import mallscore.cli  # noqa: F401  (registers commands)
from mallscore.cli.app import app
from mallscore.scoring import score_customers
from mallscore.settings import Settings
from tests.scoring_support import seed_customers, write_model

runner = CliRunner()
HEADER = 3 * 4096


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> Settings:
    """A scored warehouse (2,000 customers, several blocks) with a champion, and a CSV to ingest."""
    root = tmp_path_factory.mktemp("healthy")
    settings = Settings(warehouse=root / "wh" / "w.duckdb", models_dir=root / "models", lock_timeout=0.2)
    seed_customers(settings, known=1200, new=800)
    write_model(settings.models_dir, "v1")
    score_customers(settings, publish=False)
    (root / "day.csv").write_text("customer_id,gender,age,annual_income_thousands,spending_score\n5,Male,30,40,\n")
    return settings


def _copy(healthy: Settings, tmp_path: Path) -> Settings:
    settings = Settings(warehouse=tmp_path / "wh" / "w.duckdb", models_dir=healthy.models_dir, lock_timeout=0.2)
    settings.warehouse.parent.mkdir()
    shutil.copy(healthy.warehouse, settings.warehouse)
    return settings


def truncate(path: Path, cut: str = "half") -> None:
    """Cut the file as a full disk or a bad copy would: to half its size, or only its last 4 KiB."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if cut == "half" else data[:-4096])


def flip_data_block(path: Path, table: str = "raw_customers") -> None:
    """Flip bytes inside a block that holds ``table``'s column data (its checksum no longer matches)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        block, offset = con.execute(
            f"select block_id, block_offset from pragma_storage_info('{table}') "
            "where persistent and block_id >= 0 order by block_id desc limit 1"
        ).fetchall()[0]
        block_size = con.execute("select block_size from pragma_database_size()").fetchall()[0][0]
    finally:
        con.close()
    data = bytearray(path.read_bytes())
    at = HEADER + block * block_size + 8 + offset + 16
    for i in range(at, at + 8):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _state(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir" for p in folder.iterdir()}


def _run(settings: Settings, *args: str):
    return runner.invoke(
        app,
        ["--warehouse", str(settings.warehouse), "--models-dir", str(settings.models_dir), *args],
        env={"MALLSCORE_LOCK_TIMEOUT": "0.2", "MALLSCORE_DEBUG": ""},
    )


COMMANDS = {
    "status": ["status"],
    "features": ["features"],
    "runs": ["runs"],
    "ingest": ["ingest", "{root}/day.csv"],
    "synth": ["synth", "--rows", "5"],
    "demo": ["demo", "--rows", "50", "--new-rows", "0"],
    "score": ["score"],
    "score_sql": ["score", "--all", "--engine", "sql"],
    "rescore": ["rescore", "1", "2"],
    "rescore_write": ["rescore", "1", "--write"],
    "train": ["train", "--budget", "quick"],
    "publish": ["publish", "--to", "sqlite:///{tmp}/mall.db"],
    "backup": ["backup", "{tmp}/backups/"],
}


@pytest.mark.parametrize("cut", ["half", "tail"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_truncated_warehouse_is_78_for_every_command_and_left_untouched(healthy, tmp_path, command, cut):
    settings = _copy(healthy, tmp_path)
    truncate(settings.warehouse, cut)
    before = _state(settings.warehouse.parent)
    args = [a.format(root=healthy.warehouse.parent.parent, tmp=tmp_path) for a in COMMANDS[command]]
    result = _run(settings, *args)
    assert result.exit_code == 78, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mallscore: warehouse "), result.output
    assert "is damaged" in lines[0] and "restore the newest good backup" in lines[0]
    assert _state(settings.warehouse.parent) == before  # no byte changed, no WAL or snapshot appeared
    assert not (tmp_path / "backups").exists() or not any((tmp_path / "backups").iterdir())


@pytest.mark.parametrize("command", ["score_sql", "backup", "train"])
def test_flipped_bytes_in_a_data_block_are_78_when_read(healthy, tmp_path, command):
    settings = _copy(healthy, tmp_path)
    flip_data_block(settings.warehouse)
    args = [a.format(root=healthy.warehouse.parent.parent, tmp=tmp_path) for a in COMMANDS[command]]
    result = _run(settings, *args)
    assert result.exit_code == 78, result.output
    assert "is damaged" in result.output and "Traceback" not in result.output


def test_a_healthy_warehouse_whose_file_shrank_after_a_checkpoint_is_not_called_damaged(tmp_path):
    """DuckDB cuts free blocks off the end and keeps the header's block count: that file is healthy."""
    settings = Settings(warehouse=tmp_path / "w.duckdb", models_dir=tmp_path / "m", lock_timeout=0.2)
    assert _run(settings, "synth", "--rows", "200").exit_code == 0
    assert _run(settings, "synth", "--rows", "5").exit_code == 0
    assert _run(settings, "synth", "--rows", "10").exit_code == 0
    result = _run(settings, "status", "--json")
    assert result.exit_code == 0, result.output


def test_a_warehouse_name_too_long_for_its_temporary_files_is_refused_before_anything(tmp_path):
    long = Settings(warehouse=tmp_path / ("w" * 233 + ".duckdb"), models_dir=tmp_path / "m")
    result = _run(long, "synth", "--rows", "5")
    assert result.exit_code == 2 and "too long" in result.output and "at most 227 bytes" in result.output
    assert list(tmp_path.iterdir()) == []


def test_the_longest_accepted_warehouse_name_scores_and_publishes_its_snapshot(tmp_path):
    settings = Settings(warehouse=tmp_path / ("w" * 220 + ".duckdb"), models_dir=tmp_path / "m", lock_timeout=1)
    seed_customers(settings, known=50, new=20)
    write_model(settings.models_dir, "v1")
    result = _run(settings, "score")
    assert result.exit_code == 0, result.output
    assert settings.snapshot.exists()
    assert _run(settings, "backup", str(tmp_path / "b") + os.sep).exit_code == 0
    result = _run(settings, "restore", str(tmp_path / "b" / settings.warehouse.name))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("env", "args"),
    [
        ({"MALLSCORE_LOCK_TIMEOUT": "nan"}, ["status"]),
        ({"MALLSCORE_LOCK_TIMEOUT": "inf"}, ["status"]),
        ({"MALLSCORE_LOCK_TIMEOUT": "-1"}, ["status"]),
        ({"MALLSCORE_MEMORY_LIMIT": "0MB"}, ["status"]),
        ({}, ["runs", "--lock-timeout", "nan"]),
        ({}, ["score", "--lock-timeout", "1e300"]),
        ({}, ["runs", "--limit", "-1"]),
        ({}, ["runs", "--limit", "99999999999999999999"]),
        ({}, ["synth", "--rows", "5", "--seed", "-1"]),
        ({}, ["synth", "--rows", "99999999999999999999"]),
        ({}, ["--warehouse", ".", "status"]),
        ({}, ["backup", "b" * 250 + ".duckdb"]),
    ],
)
def test_nonsense_settings_and_options_are_2_with_a_message(tmp_path, env, args):
    settings = Settings(warehouse=tmp_path / "w.duckdb", models_dir=tmp_path / "m")
    result = runner.invoke(
        app,
        args if args[0] == "--warehouse" else ["--warehouse", str(settings.warehouse), *args],
        env={"MALLSCORE_DEBUG": "", **env},
    )
    assert result.exit_code == 2, result.output
    assert result.output.strip() and "Traceback" not in result.output
    assert not settings.warehouse.exists()
