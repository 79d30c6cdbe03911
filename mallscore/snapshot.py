"""The analyst snapshot: a consistent copy of the warehouse that analysts open read-only.

DuckDB allows one writer or many readers, never both, so an analyst's session
on the warehouse would make the nightly job fail. After each successful run the
job, still holding the warehouse's write lock, checkpoints (every commit folded
into the main file, the WAL empty), copies the file to a private temporary name,
checks that the copy opens and holds what analysts query, and renames it over
the published snapshot (:mod:`mallscore.atomic`). The job never opens the published
file: readers holding the old file keep reading it undisturbed, new readers get
the new one, and a half-written snapshot is never visible.

Copying the file costs a sequential read and write of its bytes; rebuilding the
tables in a new file would re-encode every row (bench/bench_snapshot.py).

Analysts open the snapshot with their own clients (the DuckDB CLI, DBeaver's
driver, Python or R), often older than the job's DuckDB 2.0, whose own storage
format no 1.x client reads. New warehouses are therefore created in the storage
format of DuckDB 1.1 (:data:`mallscore.warehouse.STORAGE_VERSION`), which DuckDB
keeps writing for that file, so the copy is readable by every client from 1.1
on. A warehouse created before that, in 2.0's format, still gets a portable
snapshot: its copy is re-encoded into the old format (slower; the README gives
the one-time migration that makes it a plain copy again). With
``MALLSCORE_ANALYST_GROUP`` set, the snapshot is given that group and mode 0640
before it is renamed into place.
"""

from __future__ import annotations

import grp
import logging
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import duckdb

from mallscore import atomic
from mallscore.errors import ConfigError, DiskFullError, TemporaryError, disk_full_error
from mallscore.settings import Settings

ANALYST_RELATIONS = ("segments", "segment_summary", "segment_history", "scoring_runs", "features_customer")
SNAPSHOT_MODE = 0o600  # owner only, unless MALLSCORE_ANALYST_GROUP names the analysts' group
SHARED_MODE = 0o640  # the snapshot and exported files with MALLSCORE_ANALYST_GROUP set
SHARED_DIR_MODE = 0o750
# DuckDB's file header: 8 bytes checksum, the magic "DUCK", then the storage version number.
# 64 is the number of the formats of DuckDB 0.10 to 1.1; DuckDB 2.0 writes it for a file created
# with storage_compatibility_version v1.0.0 or v1.1.0. Written as v1.1.0, the file opens in every
# client from 1.1.0 on (checked: 1.1.0, 1.1.3, the CLI 1.5.6); 1.0.0 and 0.10.3 fail to deserialize it.
PORTABLE_STORAGE_NUMBER = 64
_CHUNK = 1 << 22
log = logging.getLogger(__name__)


def storage_number(path: Path) -> int | None:
    """The storage version number in a DuckDB file's header (None when it is not a DuckDB file)."""
    with Path(path).open("rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[8:12] != b"DUCK":
        return None
    return struct.unpack("<Q", header[12:20])[0]


def is_portable(path: Path) -> bool:
    """True when the file is in the portable format (header number 64; written as v1.1.0 it opens in 1.1.0 on)."""
    return storage_number(path) == PORTABLE_STORAGE_NUMBER


def _reencode(src: Path, dest: Path, memory_limit: str) -> None:
    """Write a copy of the DuckDB file ``src`` to ``dest`` in the portable storage format.

    The job's connection may touch no other file, so a fresh in-memory
    connection does it, allowed to touch only a private folder beside ``dest``:
    ``src`` is copied there (a plain file copy; the caller holds the lock and has
    checkpointed), attached read-only, and every schema, table and view is
    copied into a new file created with the old storage version.
    """
    from mallscore.warehouse import STORAGE_VERSION, scratch_connection

    work = dest.with_name(dest.name + ".d")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700)
    try:
        source, portable = work / "source.duckdb", work / "portable.duckdb"
        atomic.copy_file(src, source)
        con = scratch_connection(work)
        try:
            if memory_limit.lower() != "default":
                con.execute("set memory_limit = $limit", {"limit": memory_limit})
            con.execute("set preserve_insertion_order = false")
            con.execute(f"attach '{_literal(source)}' as source (read_only)")
            con.execute(f"attach '{_literal(portable)}' as portable (storage_version '{STORAGE_VERSION}')")
            con.execute("copy from database source to portable")
            con.execute("detach portable")
        finally:
            con.close()
        os.chmod(portable, SNAPSHOT_MODE)
        os.replace(portable, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _literal(path: Path) -> str:
    """A path as the body of a SQL string literal (ATTACH takes no parameters)."""
    return str(path).replace("'", "''")


def analyst_group_id(settings: Settings) -> int | None:
    """The gid of MALLSCORE_ANALYST_GROUP (None when unset); ConfigError (78) for an unknown group."""
    if not settings.analyst_group:
        return None
    try:
        return grp.getgrnam(settings.analyst_group).gr_gid
    except KeyError:
        if settings.analyst_group.isdigit():
            return int(settings.analyst_group)
        raise ConfigError(
            f"MALLSCORE_ANALYST_GROUP names {settings.analyst_group!r}, which is not a group on this machine"
        ) from None


def share_file(path: Path, gid: int | None) -> None:
    """Mode 0600, or with the analysts' group ``gid`` 0640 (owner writes, the group reads, nobody else)."""
    if gid is None:
        os.chmod(path, SNAPSHOT_MODE)
        return
    try:
        os.chown(path, -1, gid)
    except PermissionError:
        raise ConfigError(
            f"cannot give {path} the group {gid} (MALLSCORE_ANALYST_GROUP): the job's user must be a member of it"
        ) from None
    os.chmod(path, SHARED_MODE)


def ensure_shared_folder(folder: Path, gid: int | None) -> None:
    """Create ``folder`` when missing: 0700, or 0750 with the analysts' group. An existing one is left as it is."""
    if folder.exists():
        return
    folder.mkdir(parents=True, mode=0o700)
    if gid is not None:
        share_file(folder, gid)
        os.chmod(folder, SHARED_DIR_MODE)


def _check_copy(path: Path) -> None:
    if not is_portable(path):
        raise TemporaryError(
            f"the new analyst snapshot is not in the portable storage format (number {storage_number(path)}); "
            "the previous snapshot was kept"
        )
    con = duckdb.connect(str(path), read_only=True, config={"enable_external_access": "false"})
    try:
        names = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    finally:
        con.close()
    missing = [n for n in ANALYST_RELATIONS if n not in names]
    if missing:
        raise TemporaryError(f"the new analyst snapshot lacks {missing}; the previous snapshot was kept")


def publish_snapshot(
    con: duckdb.DuckDBPyConnection, settings: Settings, *, before_replace: Callable[[Path], None] | None = None
) -> Path:
    """Checkpoint the warehouse on ``con`` (the job's, holding the lock) and publish a portable copy of it.

    ``before_replace`` (tests) runs on the checked copy just before it is renamed
    over the published snapshot. Raises TemporaryError when the checkpoint or
    the file system fails, DiskFullError (74) when the disk is full; the
    previous snapshot is then left as it was.
    """
    target = settings.snapshot
    gid = analyst_group_id(settings)
    ensure_shared_folder(target.parent, gid)
    for leftover in atomic.leftovers(target):  # from a killed run (a file, or a re-encoding's folder); we hold the lock
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    try:
        con.execute("checkpoint")
    except duckdb.Error as exc:
        if disk_full_error(exc) is None:
            raise
        raise DiskFullError(
            f"no space left on the device to checkpoint {settings.warehouse} before publishing the analyst snapshot "
            f"{target}; the previous snapshot was kept: free space on {target.parent} (df -h {target.parent}) "
            "and run the same command again"
        ) from None
    wal = settings.warehouse.with_name(settings.warehouse.name + ".wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise TemporaryError(
            f"the warehouse could not be checkpointed ({wal} is not empty); the analyst snapshot was not published"
        )

    def ready(copy: Path) -> None:
        _check_copy(copy)
        share_file(copy, gid)
        stale_wal = target.with_name(target.name + ".wal")
        stale_wal.unlink(missing_ok=True)  # only a read-write session on the snapshot leaves one; it must not replay
        if before_replace is not None:
            before_replace(copy)

    try:
        if is_portable(settings.warehouse):
            atomic.copy_file(settings.warehouse, target, mode=SNAPSHOT_MODE, before_replace=ready)
        else:
            log.warning(
                "warehouse %s is in DuckDB 2.0's storage format, which DuckDB 1.x clients cannot read: the analyst "
                "snapshot was re-encoded (much slower than a copy); migrate it once (README, 'Older warehouses')",
                settings.warehouse,
            )
            atomic.produce_file(
                target,
                lambda tmp: _reencode(settings.warehouse, tmp, settings.memory_limit),
                mode=SNAPSHOT_MODE,
                before_replace=ready,
            )
    except OSError as exc:
        if disk_full_error(exc) is not None:
            raise DiskFullError(
                f"no space left on the device for the analyst snapshot {target}; the previous snapshot was kept: "
                f"free space on {target.parent} (df -h {target.parent}) and run the same command again"
            ) from None
        raise TemporaryError(f"cannot publish the analyst snapshot {target}: {exc.strerror or exc}") from None
    except duckdb.Error as exc:
        raise TemporaryError(
            f"the new analyst snapshot does not open ({str(exc).splitlines()[0]}); the previous snapshot was kept"
        ) from None
    return target
