"""The one atomic-write helper: readers see the whole old file or the whole new one, owner-only, nothing left over."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mallscore import atomic


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _leftovers(folder: Path) -> list[str]:
    """Temporary files in ``folder``, found by listing it (not through the helper's own naming)."""
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def test_at_the_rename_the_target_still_holds_the_old_bytes_and_the_new_ones_are_complete(tmp_path: Path) -> None:
    target = tmp_path / "CHAMPION"
    target.write_bytes(b"v1\n")
    holder = os.open(target, os.O_RDONLY)  # a reader that opened the old file before the write
    seen = []

    def between(tmp: Path) -> None:
        seen.append((tmp.parent == target.parent, tmp.name.startswith("."), target.read_bytes(), tmp.read_bytes()))

    try:
        atomic.write_text(target, "v2-longer\n", before_replace=between)
        assert os.pread(holder, 100, 0) == b"v1\n"  # the old file was replaced, never rewritten in place
    finally:
        os.close(holder)
    assert seen == [(True, True, b"v1\n", b"v2-longer\n")]
    assert target.read_bytes() == b"v2-longer\n"
    assert _leftovers(tmp_path) == []


def test_files_are_owner_only_whatever_the_umask_unless_told_otherwise(tmp_path: Path) -> None:
    stale = atomic.temporary_name(tmp_path / "a.bin")
    stale.write_bytes(b"from a killed run")
    assert atomic.leftovers(tmp_path / "a.bin") == [stale]
    stale.chmod(0o666)  # a leftover temporary file keeps its own mode unless the helper sets it
    old = os.umask(0o022)
    try:
        atomic.write_bytes(tmp_path / "a.bin", b"x")
        atomic.write_bytes(tmp_path / "b.bin", b"x", mode=0o640)
        (tmp_path / "src").write_bytes(b"y" * 100)
        atomic.copy_file(tmp_path / "src", tmp_path / "c.bin")
    finally:
        os.umask(old)
    assert (_mode(tmp_path / "a.bin"), _mode(tmp_path / "b.bin"), _mode(tmp_path / "c.bin")) == (0o600, 0o640, 0o600)
    assert (tmp_path / "c.bin").read_bytes() == b"y" * 100
    assert _leftovers(tmp_path) == []


def test_a_failure_before_the_rename_keeps_the_old_file_and_removes_the_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "snapshot.duckdb"
    target.write_bytes(b"old snapshot")

    def refuse(tmp: Path) -> None:
        raise ValueError("the copy does not open")

    with pytest.raises(ValueError, match="does not open"):
        atomic.write_bytes(target, b"new snapshot", before_replace=refuse)
    with pytest.raises(FileNotFoundError):
        atomic.copy_file(tmp_path / "missing.duckdb", target)
    assert target.read_bytes() == b"old snapshot"
    assert _leftovers(tmp_path) == []


def test_a_big_copy_is_byte_identical(tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + b"tail"
    (tmp_path / "wh.duckdb").write_bytes(data)
    atomic.copy_file(tmp_path / "wh.duckdb", tmp_path / "backup.duckdb")
    assert (tmp_path / "backup.duckdb").read_bytes() == data


def test_a_symlink_planted_at_the_temporary_name_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me")
    atomic.temporary_name(tmp_path / "CHAMPION").symlink_to(victim)
    with pytest.raises(OSError):
        atomic.write_text(tmp_path / "CHAMPION", "v9\n")
    assert victim.read_bytes() == b"keep me" and not (tmp_path / "CHAMPION").exists()


def test_write_new_creates_an_owner_only_file_and_never_overwrites(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic.write_new(tmp_path / "model.onnx", b"graph")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "model.onnx") == 0o600 and (tmp_path / "model.onnx").read_bytes() == b"graph"
    with pytest.raises(FileExistsError):
        atomic.write_new(tmp_path / "model.onnx", b"other")
    assert (tmp_path / "model.onnx").read_bytes() == b"graph"
