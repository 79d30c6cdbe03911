"""Every file the CLI creates is readable by its owner only (0600), every folder 0700, whatever the caller's umask."""

from __future__ import annotations

import os
from pathlib import Path

from mallscore.settings import Settings
from tests.fault_support import mode
from tests.scoring_support import run_cli, write_model


def private_tree(root: Path) -> dict[str, int]:
    """Every file and folder under ``root`` (and root itself) whose mode is not 0600 / 0700."""
    wrong = {str(root): mode(root)} if mode(root) != 0o700 else {}
    for path in root.rglob("*"):
        want = 0o700 if path.is_dir() else 0o600
        if mode(path) != want:
            wrong[str(path.relative_to(root))] = oct(mode(path))
    return wrong


def test_warehouse_snapshot_backups_and_models_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a permissive caller: the CLI must not inherit it
    try:
        settings = Settings(
            warehouse=tmp_path / "wh" / "mallscore.duckdb", models_dir=tmp_path / "models", lock_timeout=2
        )
        assert run_cli(settings, "synth", "--rows", "200").returncode == 0
        assert run_cli(settings, "synth", "--rows", "50", "--new").returncode == 0
        write_model(settings.models_dir, "v1")  # the registry's own modes, in this umask-022 process
        write_model(settings.models_dir, "v2", champion=False)
        promoted = run_cli(settings, "models", "promote", "v2")  # CHAMPION and promotions.log through the CLI
        assert promoted.returncode == 0, promoted.stderr
        assert run_cli(settings, "score").returncode == 0
        assert run_cli(settings, "backup", tmp_path / "backups" / "night.duckdb").returncode == 0
        assert run_cli(settings, "restore", tmp_path / "backups" / "night.duckdb").returncode == 0
    finally:
        os.umask(old)

    names = {p.name for p in settings.warehouse.parent.iterdir()}
    assert {"mallscore.duckdb", "mallscore_analyst.duckdb", "mallscore.duckdb.before-restore"} <= names
    assert {"CHAMPION", "promotions.log", ".lock", "v1", "v2"} <= {
        p.name for p in (settings.models_dir / "default").iterdir()
    }
    for root in (settings.warehouse.parent, tmp_path / "backups", settings.models_dir):
        assert private_tree(root) == {}, root
