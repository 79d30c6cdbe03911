"""Typed failures a person can act on, each with the exit code the CLI returns.

The exit codes follow BSD sysexits and are documented in the README:
0 success, 1 unexpected error, 2 usage error, 65 bad input data, 66 input file
missing or unreadable, 75 temporary failure (retry later), 78 configuration or
model error. 130 / 143 are used when a run is interrupted (Ctrl-C / SIGTERM).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_DATAERR = 65
EXIT_NOINPUT = 66
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
