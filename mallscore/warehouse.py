"""The one module that owns DuckDB connections and builds the warehouse from ``sql/``.

DuckDB allows one read-write process or many read-only ones, never both. A
second open fails at once, so :func:`connect` retries with backoff for a bounded
time and then raises :class:`LockedError` naming the process that holds the lock.

A damaged file is a configuration error (78), never a bug. :func:`connect`
refuses a truncated file: before DuckDB opens it, the blocks its header points
at must exist (:func:`truncation`); right after, every block the database uses
must lie inside the file (:func:`missing_blocks`), before any statement runs.
:func:`damage` recognises the errors DuckDB raises later, when a query meets a
block whose checksum does not match (flipped bytes).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import duckdb

from mallscore.errors import ConfigError, InputMissingError, LockedError, disk_full_error
from mallscore.integrity import check_intact, damage, damaged_message, missing_blocks
from mallscore.settings import Settings

SQL_PACKAGE = "mallscore.sql"  # sql/ at the top of the repo, mapped into the package (pyproject.toml)
_SQL_FILE = re.compile(r"^(\d{2})_([a-z][a-z0-9_]*)\.sql$")
_SQL_NAME = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+)*$")
_KEY_MARK = re.compile(r"^--\s*unique_key:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_NOT_COUNTED = re.compile(r"^--\s*not_counted:\s*(\S.*)$", re.MULTILINE)
_LOCK_PID = re.compile(r"\(PID (\d+)\)")
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+?) \(PID (\d+)\)")
# The storage format new warehouses are written in: DuckDB 1.1's, which every client from DuckDB 1.1
# on reads (2.0's own format no 1.x client reads), so the analyst snapshot stays a plain copy of the file
# (README, "Opening the snapshot"; bench/bench_snapshot.py measured the alternatives).
STORAGE_VERSION = "v1.1.0"


def sql_root() -> Traversable:
    """The folder of SQL files shipped with the package (``sql/`` itself in an editable install)."""
    try:
        return resources.files(SQL_PACKAGE)
    except ModuleNotFoundError:
        raise ConfigError(
            f"the SQL files ({SQL_PACKAGE}) are missing from the installed package: reinstall mallscore "
            "(in a checkout: make install)"
        ) from None


def __getattr__(name: str) -> Path:
    """``SQL_DIR``: the SQL folder as a path, looked up when asked for (importing opens nothing)."""
    if name == "SQL_DIR":
        return Path(str(sql_root()))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class SqlFile:
    """One file of ``sql/``: its build order, the relation it creates, its key, and why it is not counted.

    ``not_counted`` (a ``-- not_counted: why`` line) marks a view whose row count costs a join over the
    whole history: ``status`` and ``features`` show it without a count.
    """

    order: int
    relation: str
    path: Traversable
    unique_key: str | None
    not_counted: str | None = None

    @property
    def text(self) -> str:
        """The SQL statement in the file."""
        return self.path.read_text(encoding="utf-8")


def sql_files(sql_dir: Traversable | None = None) -> list[SqlFile]:
    """The numbered SQL files that build the warehouse, in build order."""
    root = sql_root() if sql_dir is None else sql_dir
    files = []
    for path in sorted((p for p in root.iterdir() if p.name.endswith(".sql") and p.is_file()), key=lambda p: p.name):
        match = _SQL_FILE.match(path.name)
        if not match:
            raise ConfigError(f"{path}: SQL files must be named NN_relation.sql")
        text = path.read_text(encoding="utf-8")
        key, skip = _KEY_MARK.search(text), _NOT_COUNTED.search(text)
        files.append(
            SqlFile(int(match.group(1)), match.group(2), path, key.group(1) if key else None, skip and skip.group(1))
        )
    if not files:
        raise ConfigError(f"no SQL files in {root}: the installed package is incomplete (reinstall mallscore)")
    return files


def sql_query(name: str, sql_dir: Traversable | None = None) -> str:
    """A named query from a subfolder of ``sql/`` (for example ``ingest/validate_customers``)."""
    if not _SQL_NAME.match(name):
        raise ValueError(f"bad SQL file name {name!r}: lower-case names joined by '/', without '.sql'")
    root = sql_root() if sql_dir is None else sql_dir
    *folders, stem = name.split("/")
    path = root
    for folder in folders:
        path = path.joinpath(folder)
    path = path.joinpath(f"{stem}.sql")
    if not path.is_file():
        raise ConfigError(f"SQL file {name}.sql is missing from {root}: the installed package is incomplete")
    return path.read_text(encoding="utf-8")


def _describe_lock(message: str) -> str:
    holder = _LOCK_HOLDER.search(message)
    if holder:
        return f"{holder.group(1)} (PID {holder.group(2)})"
    pid = _LOCK_PID.search(message)
    return f"PID {pid.group(1)}" if pid else "another process"


def _secure_parent(path: Path) -> None:
    if not path.parent.exists():
        try:
            path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the warehouse folder {path.parent}: {exc.strerror or exc}") from None


def connect(
    path: Path,
    *,
    read_only: bool = False,
    lock_timeout: float = 0.0,
    external_access: bool = False,
    allowed_paths: Sequence[Path] = (),
) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file at ``path``, retrying while another process holds its lock.

    External file access (COPY, read_csv, ATTACH of arbitrary paths) is disabled
    unless asked for: nothing a user types can make the engine touch other files.
    ``allowed_paths`` are the only other files the connection may touch (an
    export's temporary output); access stays disabled for every other path.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise InputMissingError(
            f"warehouse {path} does not exist yet: run `mallscore ingest` or `mallscore synth` first"
        )
    if not read_only:
        _secure_parent(path)
    check_intact(path)  # before DuckDB opens it: a truncated file is never opened for writing
    config = {} if external_access or allowed_paths else {"enable_external_access": "false"}
    deadline = time.monotonic() + max(lock_timeout, 0.0)
    delay = 0.05
    while True:
        try:
            if not read_only and not path.exists():
                create_database(path)
            con = duckdb.connect(str(path), read_only=read_only, config=config)
            if allowed_paths:
                limit_file_access(con, paths=allowed_paths)
            break
        except duckdb.IOException as exc:
            message = str(exc)
            if (full := disk_full_error(exc, path)) is not None:
                raise full from None
            if "Could not set lock" not in message and "Conflicting lock" not in message:
                raise damage(exc, path) or ConfigError(
                    f"cannot open warehouse {path}: {message.splitlines()[0]}"
                ) from None
            if time.monotonic() >= deadline:
                raise LockedError(
                    f"warehouse {path} is locked by {_describe_lock(message)}; "
                    f"gave up after {lock_timeout:g}s (retry later, or raise --lock-timeout)"
                ) from None
            time.sleep(min(delay, max(deadline - time.monotonic(), 0.01)))
            delay = min(delay * 2, 2.0)
        except duckdb.Error as exc:
            if (full := disk_full_error(exc, path)) is not None:
                raise full from None
            raise damage(exc, path) or ConfigError(
                f"warehouse {path} cannot be opened ({str(exc).splitlines()[0]}); "
                "its files were left untouched: see README, Operations"
            ) from None
    _refuse_truncated(con, path)
    return con


def _refuse_truncated(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Close ``con`` and raise ConfigError (78) when the file lacks blocks its database uses."""
    try:
        detail = missing_blocks(con, path)
    except duckdb.Error as exc:
        con.close()
        known = damage(exc, path)
        if known is None:
            raise
        raise known from None
    if detail:
        con.close()
        raise ConfigError(damaged_message(path, detail))


def limit_file_access(
    con: duckdb.DuckDBPyConnection, *, paths: Sequence[Path] = (), directories: Sequence[Path] = ()
) -> None:
    """Let ``con`` (opened with external access) touch only ``paths`` and ``directories``, for good.

    DuckDB takes the allow-lists only while external access is on, and external
    access once switched off cannot be switched back on; ``con`` is closed if
    this fails.
    """
    try:
        if paths:
            con.execute("set allowed_paths = $paths", {"paths": [str(p) for p in paths]})
        if directories:
            con.execute("set allowed_directories = $dirs", {"dirs": [f"{d}/" for d in directories]})
        con.execute("set enable_external_access = false")
    except BaseException:
        con.close()
        raise


def scratch_connection(directory: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that may touch files in ``directory`` only (re-encoding the snapshot's copy there)."""
    con = duckdb.connect()
    limit_file_access(con, directories=[directory])
    return con


def create_database(path: Path, storage_version: str = STORAGE_VERSION) -> None:
    """Create an empty DuckDB file at ``path`` (mode 0600) in ``storage_version``'s format.

    DuckDB keeps writing a file in the format it was created in, so every later
    connection, whatever its settings, leaves it readable by older clients.
    """
    con = duckdb.connect(
        str(path), config={"enable_external_access": "false", "storage_compatibility_version": storage_version}
    )
    con.close()
    os.chmod(path, 0o600)


@contextmanager
def open_warehouse(
    settings: Settings, *, read_only: bool = False, build_schema: bool = True, key_checks: bool = True
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the configured warehouse (building its relations unless read-only) and close it after.

    ``key_checks=False`` builds without checking every relation's key: ingest, whose
    own rules keep ``raw_customers`` one row per customer, skips them (on 10M
    customers they take 5 s and 800 MiB); ``mallscore features`` runs them.
    """
    con = connect(settings.warehouse, read_only=read_only, lock_timeout=settings.lock_timeout)
    try:
        if build_schema and not read_only:
            build(con, check=key_checks)
        yield con
    except duckdb.Error as exc:
        known = damage(exc, settings.warehouse)
        if known is None:
            raise
        raise known from None
    finally:
        con.close()


class KeyCheckError(ConfigError):
    """A customer-level relation has a NULL or duplicated customer key."""


# DuckDB's memory while the key checks run. Each check groups the relation by its key, and a GROUP BY
# spills to <warehouse>.tmp beyond the cap; the count(distinct) it replaced could not spill and held
# every key in memory (10M customers, seven relations: 2.5 s and 592 MiB peak; grouped under this cap:
# 1.8-2.0 s and 203-207 MiB, and out of memory when count(distinct) ran under a 256MB cap).
KEY_CHECK_MEMORY_LIMIT = "128MB"


def check_keys(con: duckdb.DuckDBPyConnection, files: list[SqlFile] | None = None) -> None:
    """Assert unique, not-null keys on every relation that declares one (``-- unique_key:``).

    Memory stays within KEY_CHECK_MEMORY_LIMIT (or the connection's own lower cap) however many rows.
    """
    with memory_cap(con, KEY_CHECK_MEMORY_LIMIT):
        for f in files if files is not None else sql_files():
            if not f.unique_key:
                continue
            key, relation = f'"{f.unique_key}"', f'"{f.relation}"'
            nulls, dupes = con.execute(
                f"select (select count(*) from {relation} where {key} is null), "
                f"(select count(*) from (select {key} from {relation} where {key} is not null "
                f"group by {key} having count(*) > 1))"
            ).fetchall()[0]
            if nulls or dupes:
                raise KeyCheckError(
                    f"key check failed on {f.relation}.{f.unique_key}: {nulls} null and {dupes} duplicated "
                    f"value(s); the build was rolled back (see {f.path.name})"
                )


_SIZE = re.compile(r"^\s*([0-9.]+)\s*([kmgt]?i?b)\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def size_bytes(size: str) -> float:
    """A DuckDB size setting such as '64.0 MiB' or '256MB' in bytes (inf when unreadable)."""
    match = _SIZE.match(size)
    return float(match.group(1)) * _UNITS[match.group(2).lower()] if match else float("inf")


@contextmanager
def memory_cap(con: duckdb.DuckDBPyConnection, limit: str) -> Iterator[None]:
    """Lower DuckDB's memory_limit to ``limit`` for the block (a lower cap already set stays), then restore it
    (to the value DuckDB shows, which rounds to 0.1 of its unit)."""
    current = str(con.execute("select current_setting('memory_limit')").fetchall()[0][0])
    if size_bytes(current) <= size_bytes(limit):
        yield
        return
    con.execute(f"set memory_limit = '{limit}'")
    try:
        yield
    finally:
        try:
            con.execute(f"set memory_limit = '{current}'")
        except duckdb.Error:
            pass  # a failed transaction refuses statements; the connection closes soon after


_VIEW_DEF = re.compile(r"\bcreate\s+or\s+replace\s+view\s+([a-z_][a-z0-9_]*)", re.I)


def _tables_now_views(con: duckdb.DuckDBPyConnection, files: list[SqlFile]) -> None:
    """Drop an empty base table that a SQL file now defines as a view (a table cannot be replaced by a view).

    A non-empty one is a ConfigError: its rows would be lost, so a person must decide.
    """
    views = {m.group(1) for f in files for m in [_VIEW_DEF.search(f.text)] if m}
    tables = {
        r[0]
        for r in con.execute(
            "select table_name from duckdb_tables() where database_name = current_database() and schema_name = 'main'"
        ).fetchall()
    }
    for name in sorted(views & tables):
        rows = con.execute(f'select count(*) from "{name}"').fetchall()[0][0]
        if rows:
            raise ConfigError(
                f"{name} is now a view, but the warehouse holds it as a table with {rows} row(s); "
                f"move them elsewhere (or drop the table) and rebuild"
            )
        con.execute(f'drop table "{name}"')


def refresh_views(con: duckdb.DuckDBPyConnection) -> None:
    """Re-create every view of ``sql/``, in build order, in the caller's transaction.

    A view stores the column types of its query when it is created. DuckDB 2.0
    binds it again when a table's column changed type, but DuckDB 1.x clients
    (analysts opening the snapshot) refuse it ("Contents of view were altered"),
    so whoever alters a column type (mallscore.labels) calls this.
    """
    for f in sql_files():
        text = f.text
        if _VIEW_DEF.search(text):
            con.execute(text)


def build(con: duckdb.DuckDBPyConnection, *, check: bool = True) -> list[SqlFile]:
    """Run every SQL file in numbered order in one transaction, then the key checks."""
    files = sql_files()
    con.begin()
    try:
        _tables_now_views(con, files)
        for f in files:
            con.execute(f.text)
        if check:
            check_keys(con, files)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return files


def relation_counts(con: duckdb.DuckDBPyConnection, files: list[SqlFile] | None = None) -> dict[str, int | None]:
    """Row count of every relation the SQL files build; None for one marked ``not_counted`` (SqlFile)."""
    return {
        f.relation: None if f.not_counted else con.execute(f'select count(*) from "{f.relation}"').fetchall()[0][0]
        for f in (files if files is not None else sql_files())
    }


def label_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Labelled rows and positives in ``labels_high_spender``."""
    rows, positives = con.execute(
        "select count(*), coalesce(sum(high_spender), 0) from labels_high_spender"
    ).fetchall()[0]
    return {"rows": int(rows), "positives": int(positives)}


def label_rule() -> dict:
    """The label's definition from ``sql/25_label_rule.sql`` (its one place), evaluated in memory.

    ``{"high_spender_above": 50, "definition": "spending_score > 50"}``; training
    writes it into the card and starts the loyalty tier's observed scores there.
    """
    rule = next(f for f in sql_files() if f.relation == "label_rule")
    con = duckdb.connect(config={"enable_external_access": "false"})
    try:
        con.execute(rule.text)
        above, definition = con.execute("select high_spender_above, definition from label_rule").fetchall()[0]
    finally:
        con.close()
    return {"high_spender_above": int(above), "definition": str(definition)}
