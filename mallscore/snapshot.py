"""The analyst snapshot: a separate DuckDB file analysts open read-only.

DuckDB allows one writer or many readers, never both, so an analyst's session
on the warehouse would make the nightly job fail. After each successful run the
job copies what analysts need (``segments``, ``segment_summary``,
``scoring_runs``, ``features_customer``) into a new file in a private build
folder, checkpoints it, and renames it over the published snapshot with
``os.replace``. The job never opens the published file: readers holding the
old file keep reading it undisturbed, new readers get the new one, and a
half-written snapshot is never visible.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from mallscore.errors import TemporaryError
from mallscore.settings import Settings
from mallscore.warehouse import SQL_DIR

SNAPSHOT_TABLES = ("segments", "scoring_runs", "features_customer")
SNAPSHOT_VIEWS = ("segment_summary",)
SNAPSHOT_MODE = 0o640
_ALIAS = "analyst_snapshot_build"


def build_dir(settings: Settings) -> Path:
    """The private folder where the next snapshot is written before it is renamed into place."""
    snapshot = settings.snapshot
    return snapshot.parent / f".{snapshot.name}.build"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_snapshot(con: duckdb.DuckDBPyConnection, settings: Settings) -> Path:
    """Write a consistent snapshot from ``con`` (the job's connection) and rename it into place.

    ``con`` must allow file access to :func:`build_dir` only (see
    ``scoring.open_job_connection``). Raises TemporaryError when the file
    system refuses; the previous snapshot is then left as it was.
    """
    target = settings.snapshot
    folder = build_dir(settings)
    shutil.rmtree(folder, ignore_errors=True)  # leftovers of a killed run; we hold the warehouse lock
    folder.mkdir(mode=0o700, parents=True)
    tmp = folder / target.name
    try:
        con.execute("attach ? as " + _ALIAS, [str(tmp)])
        try:
            for table in SNAPSHOT_TABLES:
                con.execute(f'create table {_ALIAS}.main."{table}" as select * from main."{table}"')
        finally:
            con.execute("detach " + _ALIAS)
        _create_views(tmp)
        os.chmod(tmp, SNAPSHOT_MODE)
        leftovers = [p.name for p in folder.iterdir() if p != tmp]
        if leftovers:
            raise TemporaryError(f"snapshot build left {leftovers} beside the file; not publishing it")
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        stale_wal = target.with_name(target.name + ".wal")
        if stale_wal.exists():  # only a read-write session on the snapshot leaves one; it must not replay
            stale_wal.unlink()
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        raise TemporaryError(f"cannot publish the analyst snapshot {target}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return target


def _create_views(path: Path) -> None:
    """Create the analyst views inside the new file, from the same SQL files as the warehouse."""
    snap = duckdb.connect(str(path), config={"enable_external_access": "false"})
    try:
        for name in SNAPSHOT_VIEWS:
            files = sorted(SQL_DIR.glob(f"[0-9][0-9]_{name}.sql"))
            snap.execute(files[0].read_text(encoding="utf-8"))
        snap.execute("checkpoint")
    finally:
        snap.close()
