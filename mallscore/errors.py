"""Typed failures a person can act on, each with the exit code the CLI returns.

The exit codes follow BSD sysexits and are documented in the README:
0 success, 1 unexpected error, 2 usage error, 3 drift alert (``score
--fail-on-drift``: the run is committed), 65 bad input data, 66 input file
missing or unreadable, 74 input/output error (a full disk), 75 temporary failure
(retry later), 78 configuration or model error. 130 / 143 are used when a run is
interrupted (Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_DRIFT = 3  # score --fail-on-drift: the run committed, and a feature or the score drifted to 'alert'
EXIT_DATAERR = 65
EXIT_NOINPUT = 66
EXIT_IOERR = 74
EXIT_TEMPFAIL = 75
EXIT_CONFIG = 78
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class MallscoreError(Exception):
    """A known failure: one line for stderr and an exit code."""

    exit_code = EXIT_UNEXPECTED


class UsageError(MallscoreError):
    """The command line asks for something that cannot be done."""

    exit_code = EXIT_USAGE


class BadInputError(MallscoreError):
    """Input data is malformed as a whole (not a CSV, a required column missing...)."""

    exit_code = EXIT_DATAERR


class InputMissingError(MallscoreError):
    """An input file does not exist or cannot be read."""

    exit_code = EXIT_NOINPUT


class DiskFullError(MallscoreError):
    """The file system of the warehouse (or its temporary files) is full: free space, then rerun."""

    exit_code = EXIT_IOERR


_NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_NO_SPACE_TEXT = ("no space left on device", "disk quota exceeded")
_QUOTED_PATH = re.compile(r'"(/[^"]+)"')


def disk_full_error(exc: BaseException, path: Path | None = None) -> DiskFullError | None:
    """A DiskFullError naming the path and what to do when ``exc`` says the disk is full, else None.

    Recognises ``OSError`` ENOSPC/EDQUOT and DuckDB's errors (``IO Error: Could not write
    file "...": No space left on device``, or an out-of-memory error because it could not
    offload data to its temporary files). ``path`` is named when the error names none.
    """
    if isinstance(exc, DiskFullError):
        return exc
    text = str(exc)
    lowered = text.lower()
    no_space = (isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS) or any(t in lowered for t in _NO_SPACE_TEXT)
    cannot_spill = "failed to offload" in lowered  # DuckDB: no room left for its temporary files
    if not (no_space or cannot_spill):
        return None
    where = getattr(exc, "filename", None) if isinstance(exc, OSError) else None
    quoted = _QUOTED_PATH.search(text)
    target = Path(where) if where else Path(quoted.group(1)) if quoted else path
    if cannot_spill and not quoted and path is not None:
        target = path.with_name(path.name + ".tmp")
    named = f" writing {target}" if target is not None else ""
    folder = f" on {target.parent}" if target is not None else ""
    return DiskFullError(
        f"no space left on the device{named}; nothing partial was kept: free space{folder} "
        f"(df -h {target.parent if target is not None else '.'}) and run the same command again"
    )


class LockedError(MallscoreError):
    """A resource is held by another process; retrying later should succeed."""

    exit_code = EXIT_TEMPFAIL


class TemporaryError(MallscoreError):
    """A transient failure (unreachable server...): retry later."""

    exit_code = EXIT_TEMPFAIL


class ConfigError(MallscoreError):
    """Configuration or model problem (tampered model, missing champion, bad path)."""

    exit_code = EXIT_CONFIG


class InterruptedRun(MallscoreError):
    """The run was stopped by a signal and rolled back."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
