"""Consistent backups of the warehouse, and restoring one.

A backup takes the warehouse's write lock (so no run is writing), checkpoints
(so the WAL is folded into the main file and nothing committed lives only in the
WAL), then copies the single file to a temporary name beside the destination
and renames it into place (:mod:`mallscore.atomic`). A restore checks that the source opens as a DuckDB
database, keeps the current warehouse as ``<name>.before-restore``, and moves the
copy into place the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from mallscore import atomic
from mallscore.errors import ConfigError, InputMissingError, UsageError
from mallscore.settings import Settings
from mallscore.warehouse import connect


@dataclass(frozen=True)
class BackupResult:
    """Where a backup or restore went, its size and checksum."""

    source: str
    destination: str
    bytes: int
    sha256: str

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backup_warehouse(settings: Settings, dest: Path) -> BackupResult:
    """Write a consistent single-file copy of the warehouse to ``dest``."""
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / settings.warehouse.name
    if dest.resolve() == settings.warehouse.resolve():
        raise UsageError("the backup destination is the warehouse itself")
    if not settings.warehouse.exists():
        raise InputMissingError(f"warehouse {settings.warehouse} does not exist: nothing to back up")
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    con = connect(settings.warehouse, lock_timeout=settings.lock_timeout)
    try:
        con.execute("checkpoint")
        atomic.copy_file(settings.warehouse, dest)
    finally:
        con.close()
    return BackupResult(str(settings.warehouse), str(dest), dest.stat().st_size, _sha256(dest))


def restore_warehouse(settings: Settings, src: Path) -> BackupResult:
    """Replace the warehouse by the backup ``src`` (the current one is kept as ``.before-restore``)."""
    src = Path(src)
    if not src.is_file():
        raise InputMissingError(f"backup {src} does not exist or is not a file")
    try:
        check = duckdb.connect(str(src), read_only=True, config={"enable_external_access": "false"})
        check.execute("select count(*) from information_schema.tables").fetchall()
        check.close()
    except duckdb.Error as exc:
        raise ConfigError(f"backup {src} is not a readable DuckDB database ({str(exc).splitlines()[0]})") from None
    target = settings.warehouse
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if target.exists():
        con = connect(target, lock_timeout=settings.lock_timeout)  # waits for any run to finish
        try:
            con.execute("checkpoint")
        finally:
            con.close()
        atomic.copy_file(target, target.with_name(target.name + ".before-restore"))
    atomic.copy_file(src, target)
    target.with_name(target.name + ".wal").unlink(missing_ok=True)
    return BackupResult(str(src), str(target), target.stat().st_size, _sha256(target))
