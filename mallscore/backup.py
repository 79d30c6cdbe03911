"""Verified backups of the warehouse, and restoring one without losing a run.

**Backup.** Take the warehouse's write lock (no run is writing), checkpoint
(every commit folded into the main file, the WAL empty), copy the file to a
temporary name beside the destination, open the copy and read every row of
every table (each DuckDB block carries a checksum, so a truncated or flipped
file fails here), and only then rename it over the destination
(:mod:`mallscore.atomic`). A warehouse that cannot be read whole is refused (78)
and the previous backup is left byte for byte as it was.

**Restore.** Take the warehouse's lock and hold it until the new file is in
place: a run that starts meanwhile waits, then scores the restored warehouse;
a run that finished before is in ``<warehouse>.before-restore``. While holding
it: copy the backup beside the warehouse (folding in the backup's own WAL when
it has one, so its committed transactions are kept), verify the copy as above,
keep the current warehouse as ``.before-restore``, remove the (empty) WAL, and
rename the copy into place. The lock is DuckDB's own kind (a POSIX ``fcntl``
write lock on the file), taken on a descriptor this module keeps open, so
nothing opens and closes the file by its path meanwhile (that would drop the lock).

A killed backup or restore leaves only temporary files named
``.<target>.tmp-<pid>`` (:func:`mallscore.atomic.leftovers`); the next run of the
same command removes them while it holds the lock.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from mallscore import atomic
from mallscore.errors import ConfigError, InputMissingError, LockedError, TemporaryError, UsageError
from mallscore.integrity import damage, truncation
from mallscore.settings import Settings, check_file_name
from mallscore.warehouse import connect

# errors the file system raises that another part of the CLI maps (a full disk, a failing device)
_PASS_THROUGH = {errno.ENOSPC, errno.EDQUOT, errno.EIO}
_TMP_EXTRA = len(".") + len(".tmp-") + 7  # ".<name>.tmp-<pid>"
REQUIRED_TABLE = "raw_customers"  # a mallscore warehouse has it from its first build
BeforeSwap = Callable[[Path], None] | None


@dataclass(frozen=True)
class BackupResult:
    """Where a backup or restore went, its size and checksum, and what was read back to verify it."""

    source: str
    destination: str
    bytes: int
    sha256: str
    tables: int = 0
    rows: int = 0

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _has_wal(path: Path) -> bool:
    try:
        return _wal(path).stat().st_size > 0
    except FileNotFoundError:
        return False


def read_every_table(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Read every column of every row of every table on ``con``; returns rows per table.

    ``hash(t)`` over the whole row makes DuckDB read (and checksum) every block
    of every column; a count alone is answered from metadata.
    """
    tables = con.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = current_database() "
        "order by schema_name, table_name"
    ).fetchall()
    rows = {}
    for schema, table in tables:
        quoted = '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'
        rows[table] = con.execute(f"select count(*), bit_xor(hash(t)) from {quoted} as t").fetchall()[0][0]
    return rows


def verify_file(path: Path) -> dict[str, int]:
    """Open ``path`` read-only and read it whole; returns rows per table, raises duckdb.Error when it cannot."""
    con = duckdb.connect(str(path), read_only=True, config={"enable_external_access": "false"})
    try:
        return read_every_table(con)
    finally:
        con.close()


def _cannot_write(path: Path, exc: OSError) -> Exception:
    if exc.errno in _PASS_THROUGH:
        return exc
    return ConfigError(f"cannot write {path}: {exc.strerror or exc}; check the folder and its permissions")


def _clean(target: Path) -> None:
    """Remove what a killed writer of ``target`` left (the caller holds the warehouse lock)."""
    for leftover in atomic.leftovers(target):
        leftover.unlink(missing_ok=True)


def backup_warehouse(settings: Settings, dest: Path | str) -> BackupResult:
    """Write a verified single-file copy of the warehouse to ``dest`` (a file, or a folder to put it in).

    A folder is an existing one, or a path written with a trailing ``/``.
    """
    as_folder = str(dest).endswith(os.sep)
    dest = Path(dest)
    check_file_name(dest, "the backup", 0 if as_folder else _TMP_EXTRA)
    if as_folder or dest.is_dir():
        dest = dest / settings.warehouse.name
    check_file_name(dest, "the backup", _TMP_EXTRA)
    warehouse = settings.warehouse
    if not warehouse.exists():
        raise InputMissingError(f"warehouse {warehouse} does not exist: nothing to back up")
    if dest.resolve() == warehouse.resolve():
        raise UsageError("the backup destination is the warehouse itself")
    if dest.name.endswith(".wal") or dest.resolve() == _wal(warehouse).resolve():
        raise UsageError("the backup destination must not be a WAL file")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise _cannot_write(dest.parent, exc) from None
    con = connect(warehouse, lock_timeout=settings.lock_timeout)  # waits for a run; refuses a truncated file
    try:
        try:
            con.execute("checkpoint")
        except duckdb.Error as exc:
            raise damage(exc, warehouse) or TemporaryError(
                f"warehouse {warehouse} could not be checkpointed ({str(exc).splitlines()[0]}); nothing was written"
            ) from None
        if _has_wal(warehouse):
            raise TemporaryError(
                f"the warehouse could not be checkpointed ({_wal(warehouse)} is not empty); nothing was written"
            )
        _clean(dest)
        read: dict[str, int] = {}

        def verify(copy: Path) -> None:
            try:
                read.update(verify_file(copy))
            except duckdb.Error as exc:
                detail = str(exc).splitlines()[0]
                try:
                    read_every_table(con)
                except duckdb.Error as source_exc:
                    raise ConfigError(
                        f"warehouse {warehouse} is damaged and cannot be read "
                        f"({str(source_exc).splitlines()[0]}); nothing was backed up and {dest} was left as it "
                        "was: restore the newest good backup (README: Operations, A damaged warehouse)"
                    ) from None
                raise ConfigError(
                    f"the copy written for {dest} does not read back ({detail}); {dest} was left as it was: "
                    "check the disk it is on"
                ) from None

        try:
            atomic.copy_file(warehouse, dest, before_replace=verify)
        except OSError as exc:
            raise _cannot_write(dest, exc) from None
    finally:
        con.close()
    return BackupResult(
        str(warehouse), str(dest), dest.stat().st_size, _sha256(dest), tables=len(read), rows=sum(read.values())
    )


def _lock_holder(fd: int) -> str:
    """Who holds the conflicting lock on ``fd`` (Linux: F_GETLK names the PID)."""
    import fcntl

    if not sys.platform.startswith("linux") or sys.maxsize < 2**32:
        return "another process"
    layout = "hhxxxxqqixxxx"  # struct flock on 64-bit Linux: type, whence, start, len, pid
    query = struct.pack(layout, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    try:
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    except OSError:
        return "another process"
    kind, _, _, _, pid = struct.unpack(layout, answer)
    if kind == fcntl.F_UNLCK or pid <= 0:
        return "another process"
    try:
        program = Path(f"/proc/{pid}/exe").resolve()
    except OSError:
        return f"PID {pid}"
    return f"{program} (PID {pid})"


@contextmanager
def warehouse_lock(path: Path, timeout: float) -> Iterator[int | None]:
    """Hold DuckDB's write lock on ``path`` (waiting up to ``timeout`` s); yields the locked descriptor.

    Yields None when ``path`` does not exist. The lock is the one DuckDB takes
    (``fcntl`` F_SETLK, write, whole file), so every DuckDB process waits on it.
    Close no other descriptor of this file while holding it.
    """
    import fcntl

    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            yield None
            return
        except OSError as exc:
            raise ConfigError(f"cannot open warehouse {path} to lock it: {exc.strerror or exc}") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _lock_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise ConfigError(f"cannot lock warehouse {path}: {exc.strerror or exc}") from None
            if time.monotonic() >= deadline:
                raise LockedError(
                    f"warehouse {path} is locked by {holder}; gave up after {timeout:g}s "
                    "(retry later, or raise --lock-timeout)"
                ) from None
            time.sleep(min(delay, max(deadline - time.monotonic(), 0.01)))
            delay = min(delay * 2, 2.0)
            continue
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if not same:  # another restore replaced the file between our open and our lock: lock the new one
            os.close(fd)
            continue
        try:
            yield fd
        finally:
            os.close(fd)
        return


def _fold_warehouse_wal(settings: Settings) -> None:
    """Checkpoint the current warehouse so that nothing committed lives only in its WAL."""
    con = connect(settings.warehouse, lock_timeout=settings.lock_timeout)
    try:
        con.execute("checkpoint")
    except duckdb.Error as exc:
        raise damage(exc, settings.warehouse) or TemporaryError(
            f"warehouse {settings.warehouse} could not be checkpointed ({str(exc).splitlines()[0]}); "
            "nothing was restored"
        ) from None
    finally:
        con.close()


def _prepare_copy(src: Path, copy: Path) -> dict[str, int]:
    """Copy the backup ``src`` (and its WAL's commits) to ``copy`` and read it whole; rows per table."""
    try:
        with copy.open("xb") as out, src.open("rb") as fin:
            os.chmod(copy, atomic.PRIVATE_MODE)
            while block := fin.read(1 << 22):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if _has_wal(src):
            # the backup was copied with its WAL (not by `mallscore backup`): replay it into the copy
            with _wal(copy).open("xb") as out, _wal(src).open("rb") as fin:
                while block := fin.read(1 << 22):
                    out.write(block)
            folding = duckdb.connect(str(copy), config={"enable_external_access": "false"})
            try:
                folding.execute("checkpoint")
            finally:
                folding.close()
            if _has_wal(copy):
                raise ConfigError(f"the WAL of backup {src} could not be folded into the copy; nothing was restored")
            _wal(copy).unlink(missing_ok=True)
        rows = verify_file(copy)
    except duckdb.Error as exc:
        raise ConfigError(
            f"backup {src} is not a readable DuckDB database or is damaged ({str(exc).splitlines()[0]}); "
            "the warehouse was not changed"
        ) from None
    except OSError as exc:
        raise _cannot_write(copy, exc) from None
    if REQUIRED_TABLE not in rows:
        raise ConfigError(
            f"backup {src} is a DuckDB database but not a mallscore warehouse (no {REQUIRED_TABLE} table); "
            "the warehouse was not changed"
        )
    return rows


def restore_warehouse(settings: Settings, src: Path, *, before_swap: BeforeSwap = None) -> BackupResult:
    """Replace the warehouse by the backup ``src``, verified first; the current one is kept as ``.before-restore``.

    ``before_swap`` (tests) runs with the lock held, after ``.before-restore`` is
    written and just before the verified copy is renamed over the warehouse.
    """
    src = Path(src)
    target = settings.warehouse
    check_file_name(src, "the backup")
    if not src.is_file():
        raise InputMissingError(f"backup {src} does not exist or is not a file")
    if target.exists() and os.path.samefile(src, target):
        raise UsageError("the backup to restore is the warehouse itself")
    cut = truncation(src)  # a truncated backup is refused before anything else
    if cut:
        raise ConfigError(f"backup {src} is damaged ({cut}); the warehouse was not changed")
    keep = target.with_name(target.name + ".before-restore")
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise _cannot_write(target.parent, exc) from None
    for _ in range(3):
        if target.exists() and _has_wal(target):
            try:  # takes and releases DuckDB's own lock; we lock again below
                _fold_warehouse_wal(settings)
            except ConfigError as exc:
                raise ConfigError(
                    f"{exc}; the current warehouse has a WAL ({_wal(target)}) that cannot be folded into it: "
                    "move both files aside together (README: A damaged warehouse), then restore"
                ) from None
        with warehouse_lock(target, settings.lock_timeout) as fd:
            if fd is not None and _has_wal(target):
                continue  # a run committed between the checkpoint and our lock: fold its WAL too
            return _swap_in(src, target, keep, fd, before_swap)
    raise TemporaryError(f"warehouse {target} kept getting new commits while restoring; stop the jobs and retry")


def _swap_in(src: Path, target: Path, keep: Path, fd: int | None, before_swap: BeforeSwap) -> BackupResult:
    """With the lock held (``fd``, None when there is no warehouse yet): verify, keep the old one, swap."""
    _clean(target)
    _clean(keep)
    copy = atomic.temporary_name(target)
    try:
        rows = _prepare_copy(src, copy)
        size, sha256 = copy.stat().st_size, _sha256(copy)  # of the verified copy: the new file may be in use soon
        if fd is not None:
            try:
                atomic.copy_open_file(fd, keep)
            except OSError as exc:
                raise _cannot_write(keep, exc) from None
            _wal(keep).unlink(missing_ok=True)  # an older .before-restore's WAL would be replayed onto this one
            _wal(target).unlink(missing_ok=True)  # empty (checked under the lock): nothing committed is lost
            if before_swap is not None:
                before_swap(copy)
            os.replace(copy, target)
        else:
            if _wal(target).exists():
                raise ConfigError(
                    f"{_wal(target)} is left without its warehouse file: move it aside with the damaged file "
                    "(README: A damaged warehouse), then restore; the warehouse was not changed"
                )
            try:
                os.link(copy, target)  # only if nobody created a warehouse meanwhile
            except FileExistsError:
                raise LockedError(f"warehouse {target} appeared while restoring; retry") from None
            except OSError:
                os.replace(copy, target)  # no hard links on this file system
    except BaseException:
        copy.unlink(missing_ok=True)
        _wal(copy).unlink(missing_ok=True)
        raise
    copy.unlink(missing_ok=True)
    atomic.fsync_dir(target.parent)
    return BackupResult(str(src), str(target), size, sha256, tables=len(rows), rows=sum(rows.values()))
