"""One frozen settings object: defaults, then environment variables, then CLI flags.

Every ``MALLSCORE_*`` environment variable is read here and nowhere else
(:data:`ENVIRONMENT` lists them for the README and the tests). Building
settings does no I/O: paths are only resolved, never created.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from mallscore.errors import UsageError

DEFAULT_WAREHOUSE = Path("warehouse/mallscore.duckdb")
DEFAULT_MODELS_DIR = Path("models")
DEFAULT_LOCK_TIMEOUT = 60.0
DEFAULT_MEMORY_LIMIT = "64MB"
DEFAULT_PUBLISH_TABLE = "mallscore_segments"
DEFAULT_DRIFT_WARN = 0.1  # PSI: below is stable, 0.1-0.25 watch, from 0.25 act (the usual convention)
DEFAULT_DRIFT_ALERT = 0.25
ENVIRONMENT = {
    "MALLSCORE_WAREHOUSE": "warehouse",
    "MALLSCORE_MODELS_DIR": "models_dir",
    "MALLSCORE_LOCK_TIMEOUT": "lock_timeout",
    "MALLSCORE_MEMORY_LIMIT": "memory_limit",
    "MALLSCORE_PUBLISH_URL": "publish_url",
    "MALLSCORE_PUBLISH_TABLE": "publish_table",
    "MALLSCORE_SOURCE_URL": "source_url",
    "MALLSCORE_DEBUG": "debug",
    "MALLSCORE_ANALYST_PATH": "analyst_path",
    "MALLSCORE_ANALYST_GROUP": "analyst_group",
    "MALLSCORE_MAX_SEGMENT_CHANGE": "max_segment_change",
    "MALLSCORE_DRIFT_WARN": "drift_warn",
    "MALLSCORE_DRIFT_ALERT": "drift_alert",
}
_MEMORY = re.compile(r"^(\d+(\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)$", re.IGNORECASE)
MAX_LOCK_TIMEOUT = 86_400.0  # a day: a nightly job that waits longer has missed its night
NAME_MAX = 255  # bytes in one file name on Linux and macOS file systems
# The longest names derived from the warehouse's: the snapshot's and the restore copy's temporary
# files (".<name>.tmp-<pid>", pid up to 7 digits).
_TMP_SUFFIX = len(".tmp-") + 7


@dataclass(frozen=True)
class Settings:
    """Where the warehouse and models live, and how long to wait for a lock."""

    warehouse: Path = DEFAULT_WAREHOUSE
    models_dir: Path = DEFAULT_MODELS_DIR
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    memory_limit: str = DEFAULT_MEMORY_LIMIT  # the scoring job's DuckDB memory_limit; "default" = DuckDB's (80% of RAM)
    publish_url: str | None = None  # where `score` publishes after a run and `publish` writes by default
    publish_table: str = DEFAULT_PUBLISH_TABLE
    source_url: str | None = None  # the database `ingest --table/--query` reads by default
    debug: bool = False  # unexpected errors print their traceback
    analyst_path: Path | None = None  # where the analyst snapshot is published; None: beside the warehouse
    analyst_group: str | None = None  # the group given read access (0640) to the snapshot and exported files
    max_segment_change: float | None = None  # share of customers above which `train` does not promote (None: off)
    drift_warn: float = DEFAULT_DRIFT_WARN  # a feature's PSI from which a run's drift status is 'warn'
    drift_alert: float = DEFAULT_DRIFT_ALERT  # ... and 'alert' (score --fail-on-drift exits 3)

    @property
    def snapshot(self) -> Path:
        """The analyst snapshot: MALLSCORE_ANALYST_PATH, or a separate DuckDB file beside the warehouse."""
        if self.analyst_path is not None:
            return self.analyst_path
        return self.warehouse.with_name(self.warehouse.stem + "_analyst.duckdb")

    def with_overrides(self, **changes: object) -> Settings:
        """Return a copy with the non-None values in ``changes`` applied."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def check_lock_timeout(value: float, name: str = "--lock-timeout") -> float:
    """``value`` when it is a usable number of seconds (0 to a day), else UsageError (2)."""
    if not math.isfinite(value) or value < 0 or value > MAX_LOCK_TIMEOUT:
        raise UsageError(f"{name} must be a number of seconds from 0 to {MAX_LOCK_TIMEOUT:g}, got {value!r}")
    return value


def _lock_timeout(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"MALLSCORE_LOCK_TIMEOUT must be a number of seconds, got {raw!r}") from None
    return check_lock_timeout(value, "MALLSCORE_LOCK_TIMEOUT")


def _max_segment_change(raw: str) -> float | None:
    """MALLSCORE_MAX_SEGMENT_CHANGE: a share from 0 to 1 ("off" or empty: no limit)."""
    value = raw.strip().lower()
    if value in ("", "off", "none"):
        return None
    try:
        share = float(value)
    except ValueError:
        share = math.nan
    if not 0.0 <= share <= 1.0:
        raise UsageError(
            f"MALLSCORE_MAX_SEGMENT_CHANGE must be a share of customers from 0 to 1 (0.05 = 5%) or 'off', got {raw!r}"
        )
    return share


def _memory_limit(raw: str) -> str:
    value = raw.strip()
    match = _MEMORY.match(value)
    if value.lower() != "default" and (not match or float(match.group(1)) <= 0):
        raise UsageError(
            f"MALLSCORE_MEMORY_LIMIT must be a positive size such as 64MB or 2GB, or 'default', got {raw!r}"
        )
    return value


def _psi(env: Mapping[str, str], name: str) -> float | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name} must be a number (a PSI such as 0.1), got {raw!r}") from None
    if not math.isfinite(value) or value <= 0 or value > 100:
        raise UsageError(f"{name} must be a PSI above 0 and at most 100, got {raw!r}")
    return value


def _bytes(name: str) -> int:
    return len(name.encode("utf-8", "surrogateescape"))


def longest_derived_name(warehouse: Path) -> int:
    """Bytes in the longest file name mallscore writes beside the warehouse.

    That is the temporary file of ``<name>.before-restore`` (restore) or of the
    analyst snapshot ``<stem>_analyst.duckdb``: ``.<target>.tmp-<pid>``.
    """
    name = _bytes(warehouse.name)
    snapshot = _bytes(warehouse.stem) + _bytes("_analyst.duckdb")
    return 1 + max(name + _bytes(".before-restore"), snapshot) + _TMP_SUFFIX


def check_file_name(path: Path, what: str, extra: int = 0) -> None:
    """UsageError (2) when ``path``'s name, plus ``extra`` bytes, would not fit in a file name."""
    size = _bytes(path.name) + extra
    if size > NAME_MAX:
        raise UsageError(
            f"{what} file name {path.name[:40]!r}... is too long: {size - extra} bytes, and the temporary files "
            f"mallscore writes beside it need {extra} more, over the {NAME_MAX} a file name may have; "
            f"choose a name of at most {NAME_MAX - extra} bytes"
        )


def check_warehouse_name(warehouse: Path) -> None:
    """UsageError (2) when a name mallscore derives from the warehouse's would not fit the file system.

    Checked when settings are built, before any command opens anything, so a
    run never commits and then fails on its snapshot's temporary name.
    """
    check_file_name(warehouse, "the warehouse", longest_derived_name(warehouse) - _bytes(warehouse.name))


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None


def debug_enabled(env: Mapping[str, str] | None = None) -> bool:
    """MALLSCORE_DEBUG as the error handler needs it, even when the other settings are invalid."""
    env = os.environ if env is None else env
    return (env.get("MALLSCORE_DEBUG") or "").strip() not in ("", "0", "false", "no")


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    warehouse: Path | None = None,
    models_dir: Path | None = None,
    lock_timeout: float | None = None,
) -> Settings:
    """Build settings from defaults, then ``env`` (os.environ), then explicit flags."""
    env = os.environ if env is None else env
    settings = Settings()
    settings = settings.with_overrides(
        warehouse=Path(env["MALLSCORE_WAREHOUSE"]) if env.get("MALLSCORE_WAREHOUSE") else None,
        models_dir=Path(env["MALLSCORE_MODELS_DIR"]) if env.get("MALLSCORE_MODELS_DIR") else None,
        lock_timeout=_lock_timeout(env["MALLSCORE_LOCK_TIMEOUT"]) if env.get("MALLSCORE_LOCK_TIMEOUT") else None,
        memory_limit=_memory_limit(env["MALLSCORE_MEMORY_LIMIT"]) if env.get("MALLSCORE_MEMORY_LIMIT") else None,
        publish_url=_text(env, "MALLSCORE_PUBLISH_URL"),
        publish_table=_text(env, "MALLSCORE_PUBLISH_TABLE"),
        source_url=_text(env, "MALLSCORE_SOURCE_URL"),
        debug=debug_enabled(env) or None,
        analyst_path=Path(env["MALLSCORE_ANALYST_PATH"]) if _text(env, "MALLSCORE_ANALYST_PATH") else None,
        analyst_group=_text(env, "MALLSCORE_ANALYST_GROUP"),
        max_segment_change=_max_segment_change(env.get("MALLSCORE_MAX_SEGMENT_CHANGE") or ""),
        drift_warn=_psi(env, "MALLSCORE_DRIFT_WARN"),
        drift_alert=_psi(env, "MALLSCORE_DRIFT_ALERT"),
    )
    if settings.drift_warn > settings.drift_alert:
        raise UsageError(
            f"MALLSCORE_DRIFT_WARN ({settings.drift_warn:g}) must not be above MALLSCORE_DRIFT_ALERT "
            f"({settings.drift_alert:g})"
        )
    if lock_timeout is not None:
        check_lock_timeout(lock_timeout)
    settings = settings.with_overrides(warehouse=warehouse, models_dir=models_dir, lock_timeout=lock_timeout)
    if not settings.warehouse.name or settings.warehouse.name in (".", ".."):
        raise UsageError(f"the warehouse must be a file name, got {str(settings.warehouse)!r}")
    check_warehouse_name(settings.warehouse)
    return settings
