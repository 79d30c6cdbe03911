"""The analyst snapshot: a consistent copy of the warehouse that analysts open read-only.

DuckDB allows one writer or many readers, never both, so an analyst's session
on the warehouse would make the nightly job fail. After each successful run the
job, still holding the warehouse's write lock, checkpoints (every commit folded
into the main file, the WAL empty), copies the file to a private temporary name,
checks that the copy opens and holds what analysts query, and renames it over
the published snapshot with ``os.replace``. The job never opens the published
file: readers holding the old file keep reading it undisturbed, new readers get
the new one, and a half-written snapshot is never visible.

Copying the file costs a sequential read and write of its bytes; rebuilding the
tables in a new file would re-encode every row (measured: several times slower
than the scoring run itself at 10 million customers).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb

from mallscore import atomic
from mallscore.errors import DiskFullError, TemporaryError, disk_full_error
from mallscore.settings import Settings

ANALYST_RELATIONS = ("segments", "segment_summary", "segment_history", "scoring_runs", "features_customer")
SNAPSHOT_MODE = 0o600  # owner only; analysts get access explicitly (README.md, File permissions)


def _check_copy(path: Path) -> None:
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
    """Checkpoint the warehouse on ``con`` (the job's, holding the lock) and publish a copy of it.

    ``before_replace`` (tests) runs on the checked copy just before it is renamed
    over the published snapshot. Raises TemporaryError when the checkpoint or
    the file system fails; the previous snapshot is then left as it was.
    """
    target = settings.snapshot
    for leftover in atomic.leftovers(target):  # from a killed run; we hold the lock
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
        stale_wal = target.with_name(target.name + ".wal")
        stale_wal.unlink(missing_ok=True)  # only a read-write session on the snapshot leaves one; it must not replay
        if before_replace is not None:
            before_replace(copy)

    try:
        atomic.copy_file(settings.warehouse, target, mode=SNAPSHOT_MODE, before_replace=ready)
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
