"""Writing a file so that readers see either the whole old file or the whole new one, never a part.

Every published file (the analyst snapshot, backups and restores, a spec's
``CHAMPION``) is written the same way: the bytes go to a temporary
file beside the target (same folder, so the rename stays on one file system),
named ``.<name>.tmp-<pid>`` and created with ``mode`` (0600 unless told
otherwise, whatever the umask), fsynced, then moved over the target with
``os.replace`` and the folder fsynced so the rename survives a power cut. The
target is never opened for writing: a reader holding the old file keeps reading
it, a new reader gets the new one. On any failure the temporary file is removed
and the target is left as it was.

``before_replace`` runs on the complete temporary file just before the rename:
callers check the copy there (the snapshot opens it), and tests use it to look
at the published path at the one moment a non-atomic writer would expose a
partial file.

A model version is a folder: its files are written with :func:`write_new`
(created, fsynced) inside a temporary folder that is renamed into place whole.

This module is on the scoring path: it imports only the standard library.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

PRIVATE_MODE = 0o600
_SENDFILE_MAX = 1 << 30
_CHUNK = 1 << 22
_NO_SENDFILE = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}

BeforeReplace = Callable[[Path], None] | None


def temporary_name(target: Path) -> Path:
    """The temporary file this process writes before renaming it over ``target``."""
    target = Path(target)
    return target.with_name(f".{target.name}.tmp-{os.getpid()}")


def leftovers(target: Path) -> list[Path]:
    """Temporary files that writers of ``target`` killed before their rename left behind."""
    target = Path(target)
    return sorted(target.parent.glob(f".{target.name}.tmp-*"))


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in folder ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(target: Path, produce: Callable[[Path], None], before_replace: BeforeReplace) -> None:
    """Let ``produce`` write a complete, fsynced file at the temporary name, check it, rename it over ``target``."""
    target = Path(target)
    tmp = temporary_name(target)
    try:
        produce(tmp)
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def _replace_with(target: Path, fill: Callable[[int], None], mode: int, before_replace: BeforeReplace) -> None:
    """Create the temporary file with ``mode``, let ``fill`` write it, fsync, check, rename over ``target``."""

    def produce(tmp: Path) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            os.fchmod(fd, mode)  # the umask narrowed the creation mode; a leftover file kept its own
            fill(fd)
            os.fsync(fd)
        finally:
            os.close(fd)

    _publish(target, produce, before_replace)


def produce_file(
    target: Path, produce: Callable[[Path], None], *, mode: int = PRIVATE_MODE, before_replace: BeforeReplace = None
) -> None:
    """Replace ``target`` atomically by a file that ``produce(tmp)`` writes at the temporary name (e.g. an engine)."""

    def produced(tmp: Path) -> None:
        produce(tmp)
        os.chmod(tmp, mode)
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    _publish(target, produced, before_replace)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_bytes(path: Path, data: bytes, *, mode: int = PRIVATE_MODE, before_replace: BeforeReplace = None) -> None:
    """Replace ``path`` atomically by a file holding ``data``."""
    _replace_with(path, lambda fd: _write_all(fd, data), mode, before_replace)


def write_new(path: Path, data: bytes, *, mode: int = PRIVATE_MODE) -> None:
    """Create ``path`` (it must not exist) holding ``data``, fsynced: a file in a folder renamed into place."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def write_text(
    path: Path,
    text: str,
    *,
    encoding: str = "utf-8",
    mode: int = PRIVATE_MODE,
    before_replace: BeforeReplace = None,
) -> None:
    """Replace ``path`` atomically by a file holding ``text`` encoded with ``encoding``."""
    write_bytes(path, text.encode(encoding), mode=mode, before_replace=before_replace)


def _copy_into(src: Path, fd: int) -> None:
    with Path(src).open("rb") as fin:
        size = os.fstat(fin.fileno()).st_size
        copied = 0
        try:
            while copied < size:  # in-kernel copy where the platform has it
                sent = os.sendfile(fd, fin.fileno(), copied, min(size - copied, _SENDFILE_MAX))
                if sent == 0:
                    break
                copied += sent
            return
        except OSError as exc:
            if copied or exc.errno not in _NO_SENDFILE:
                raise
        with os.fdopen(os.dup(fd), "wb") as fout:  # no sendfile for these files: copy through user space
            shutil.copyfileobj(fin, fout, _CHUNK)


def copy_file(src: Path, dest: Path, *, mode: int = PRIVATE_MODE, before_replace: BeforeReplace = None) -> None:
    """Replace ``dest`` atomically by a copy of ``src``."""
    _replace_with(dest, lambda fd: _copy_into(src, fd), mode, before_replace)


def _copy_from_fd(src_fd: int, fd: int) -> None:
    size = os.fstat(src_fd).st_size
    copied = 0
    while copied < size:  # positional reads: the descriptor's offset is left alone
        chunk = os.pread(src_fd, min(_CHUNK, size - copied), copied)
        if not chunk:
            break
        _write_all(fd, chunk)
        copied += len(chunk)


def copy_open_file(src_fd: int, dest: Path, *, mode: int = PRIVATE_MODE, before_replace: BeforeReplace = None) -> None:
    """Replace ``dest`` atomically by a copy of the file open as ``src_fd``.

    For a caller holding a POSIX lock on that file: opening and closing the file
    again by its path would release every lock this process holds on it.
    """
    _replace_with(dest, lambda fd: _copy_from_fd(src_fd, fd), mode, before_replace)


_PID_TAG = re.compile(r"-pid(\d+)-[^-]*$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fresh_temp_dir(parent: Path, prefix: str, family: str) -> Path:
    """A new private folder ``<prefix>pid<PID>-<random>`` in ``parent``, after removing the ``family*``
    folders that processes which no longer run left behind (a killed writer); live writers' are kept."""
    parent = Path(parent)
    for old in parent.glob(f"{family}*"):
        match = _PID_TAG.search(old.name)
        if old.is_dir() and not old.is_symlink() and match and not _alive(int(match.group(1))):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=parent, prefix=f"{prefix}pid{os.getpid()}-"))
