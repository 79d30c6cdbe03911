"""One frozen settings object: defaults, then environment variables, then CLI flags.

Building settings does no I/O: paths are only resolved, never created.
"""

from __future__ import annotations

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
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)$", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    """Where the warehouse and models live, and how long to wait for a lock."""

    warehouse: Path = DEFAULT_WAREHOUSE
    models_dir: Path = DEFAULT_MODELS_DIR
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    memory_limit: str = DEFAULT_MEMORY_LIMIT  # the scoring job's DuckDB memory_limit; "default" = DuckDB's (80% of RAM)

    @property
    def snapshot(self) -> Path:
        """The analyst snapshot: a separate DuckDB file beside the warehouse."""
        return self.warehouse.with_name(self.warehouse.stem + "_analyst.duckdb")

    def with_overrides(self, **changes: object) -> Settings:
        """Return a copy with the non-None values in ``changes`` applied."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _lock_timeout(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"MALLSCORE_LOCK_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise UsageError("MALLSCORE_LOCK_TIMEOUT must not be negative")
    return value


def _memory_limit(raw: str) -> str:
    value = raw.strip()
    if value.lower() != "default" and not _MEMORY.match(value):
        raise UsageError(f"MALLSCORE_MEMORY_LIMIT must be a size such as 64MB or 2GB, or 'default', got {raw!r}")
    return value


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
    )
    if lock_timeout is not None and lock_timeout < 0:
        raise UsageError("--lock-timeout must not be negative")
    return settings.with_overrides(warehouse=warehouse, models_dir=models_dir, lock_timeout=lock_timeout)
