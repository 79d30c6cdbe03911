"""Helpers every command shares: settings from the context, errors to exit codes, output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from mallscore.errors import EXIT_SIGINT, EXIT_UNEXPECTED, MallscoreError, disk_full_error
from mallscore.settings import Settings, debug_enabled, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def settings_from(ctx: typer.Context, **flags: Any) -> Settings:
    """Settings from defaults, environment, then global and command flags."""
    root = ctx.find_root().obj or {}
    return load_settings(warehouse=root.get("warehouse"), models_dir=root.get("models_dir"), **flags)


def fail(message: str, code: int) -> typer.Exit:
    """Print one line on stderr and return the Exit to raise."""
    sys.stderr.write(f"mallscore: {message}\n")
    sys.stderr.flush()
    return typer.Exit(code)


def _known_failure(exc: Exception, ctx: Any) -> MallscoreError | None:
    """A known failure hiding in a library exception: a DuckDB file that cannot be read whole (78)."""
    if not type(exc).__module__.startswith(("duckdb", "_duckdb")):
        return None
    from mallscore.integrity import damage

    warehouse = None
    if isinstance(ctx, typer.Context):
        try:
            warehouse = settings_from(ctx).warehouse
        except MallscoreError:
            pass
    return damage(exc, warehouse)


def cli_errors(func: F) -> F:
    """Turn known failures into one stderr line and their exit code, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except MallscoreError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", EXIT_SIGINT) from None
        except Exception as exc:  # the last resort: still one line
            full = disk_full_error(exc, _warehouse_of(kwargs.get("ctx")))
            if full is not None:  # raised by DuckDB or the file system wherever a write happens
                raise fail(str(full), full.exit_code) from None
            known = _known_failure(exc, kwargs.get("ctx"))
            if known is not None:  # a damaged warehouse found by a query
                raise fail(str(known), known.exit_code) from None
            if debug_enabled():
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise fail(
                f"unexpected error: {type(exc).__name__}: {first} (set MALLSCORE_DEBUG=1 for a traceback)",
                EXIT_UNEXPECTED,
            ) from None

    return wrapper  # type: ignore[return-value]


def _warehouse_of(ctx: typer.Context | None) -> Path | None:
    """The warehouse the failed command was using, to name it in a message (None if unknown)."""
    try:
        return settings_from(ctx).warehouse if ctx is not None else load_settings().warehouse
    except Exception:  # a message must never fail
        return None


def emit_json(obj: Any) -> None:
    """Print one JSON object on stdout."""
    typer.echo(json.dumps(obj, indent=2, default=str, sort_keys=False))


def is_terminal() -> bool:
    """True when stderr is a terminal (progress bars are shown only then)."""
    return sys.stderr.isatty()
