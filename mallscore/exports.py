"""Read-only exports: current segments, the change feed and rejected rows, to a terminal or a file.

Every read opens the warehouse read-only (or the analyst snapshot), so it never
creates a warehouse (a missing one is exit 66 naming the path) and never
writes one. Files are written by DuckDB's own ``COPY ... TO`` (as fast as the
engine writes Parquet), on a connection allowed to touch one path only, a
temporary name beside the output, which is then given its mode (0600, or 0640
and the analysts' group) and renamed into place: a reader never sees half a
file. Formats: ``csv`` (UTF-8, a header), ``jsonl`` (one JSON object a line),
``parquet``, and ``table`` for a person at a terminal. Timestamps are
ISO-8601 UTC (``2026-11-30T02:15:03.123456Z``) in csv and jsonl, and
Parquet timestamps. The columns come in the order of the query files in
``sql/exports/``, every time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import duckdb

from mallscore.errors import InputMissingError, UsageError
from mallscore.settings import Settings

FORMATS = ("table", "csv", "jsonl", "parquet")
FILE_FORMATS = {"csv": "csv", "jsonl": "jsonl", "json": "jsonl", "ndjson": "jsonl", "parquet": "parquet"}
ISO_TIMESTAMP = "%Y-%m-%dT%H:%M:%S.%fZ"
TABLE_ROWS = 100  # a table on the terminal shows at most this many rows; files have them all
_COPY_OPTIONS = {
    "csv": f"format csv, header true, timestampformat '{ISO_TIMESTAMP}'",
    "jsonl": f"format json, timestampformat '{ISO_TIMESTAMP}'",
    "parquet": "format parquet",
}


@dataclass(frozen=True)
class Query:
    """One read: the SQL (from ``sql/exports/``), its parameters, and what it is, for messages."""

    sql: str
    params: dict
    what: str


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    rows: int
    format: str
    path: str | None
    source: str

    def as_dict(self) -> dict:
        """The result as a JSON-ready dict."""
        return dict(self.__dict__)


# --- the three reads --------------------------------------------------------------------------


def _sql(name: str) -> str:
    from mallscore.warehouse import sql_query

    return sql_query(f"exports/{name}")


def _require(con: duckdb.DuckDBPyConnection, relation: str, source: Path) -> None:
    found = (
        con.execute(
            "select count(*) from duckdb_tables() where table_name = $n and database_name = current_database()",
            {"n": relation},
        ).fetchall()[0][0]
        + con.execute(
            "select count(*) from duckdb_views() where view_name = $n and database_name = current_database()",
            {"n": relation},
        ).fetchall()[0][0]
    )
    if not found:
        raise InputMissingError(
            f"{source} has no {relation} yet: run `mallscore features` or `mallscore score` with this version first"
        )


def _run_exists(con: duckdb.DuckDBPyConnection, run_id: str) -> bool:
    return bool(con.execute("select count(*) from scoring_runs where run_id = $r", {"r": run_id}).fetchall()[0][0])


def segments_query(segment: str | None = None, limit: int | None = None) -> Callable[..., Query]:
    """``mallscore segments``: current segments (one segment's); with ``limit`` the first ``limit`` by customer id."""

    def build(con: duckdb.DuckDBPyConnection, source: Path) -> Query:
        _require(con, "segments", source)
        if limit is None:  # everyone: in the table's order (a sort would double a large export's cost)
            return Query(_sql("segments"), {"segment": segment}, "segments")
        return Query(_sql("segments_first"), {"segment": segment, "limit": limit}, "segments")

    return build


def changes_query(run_id: str | None = None, since: str | None = None) -> Callable[..., Query]:
    """``mallscore changes``: one run's changes (default the latest succeeded run), or all since a run, collapsed."""
    if run_id is not None and since is not None:
        raise UsageError("give --run or --since, not both")

    def build(con: duckdb.DuckDBPyConnection, source: Path) -> Query:
        _require(con, "segment_changes", source)
        if since is not None:
            if not _run_exists(con, since):
                raise InputMissingError(f"run {since} is not in {source}'s scoring_runs (see `mallscore runs`)")
            return Query(_sql("changes_since"), {"since_run": since}, f"changes since run {since}")
        run = run_id
        if run is None:
            latest = con.execute(
                "select run_id from scoring_runs where status = 'succeeded' order by started_at desc, run_id desc "
                "limit 1"
            ).fetchall()
            if not latest:
                raise InputMissingError(f"{source} has no succeeded scoring run yet: run `mallscore score` first")
            run = latest[0][0]
        elif not _run_exists(con, run):
            raise InputMissingError(f"run {run} is not in {source}'s scoring_runs (see `mallscore runs`)")
        return Query(_sql("changes_run"), {"run_id": run}, f"changes of run {run}")

    return build


def rejected_query(load_id: str | None = None, run_id: str | None = None) -> Callable[..., Query]:
    """``mallscore rejected``: rejected rows with their reason, of one load, one run, or all."""
    if load_id is not None and run_id is not None:
        raise UsageError("give --load or --run, not both")

    def build(con: duckdb.DuckDBPyConnection, source: Path) -> Query:
        _require(con, "rejected_rows", source)
        if load_id is not None:
            known = con.execute("select count(*) from ingest_loads where load_id = $l", {"l": load_id}).fetchall()
            if not known[0][0]:
                raise InputMissingError(f"load {load_id} is not in {source}'s ingest_loads (see `mallscore status`)")
        if run_id is not None and not _run_exists(con, run_id):
            raise InputMissingError(f"run {run_id} is not in {source}'s scoring_runs (see `mallscore runs`)")
        return Query(_sql("rejected"), {"load_id": load_id, "run_id": run_id}, "rejected rows")

    return build


# --- opening the source ---------------------------------------------------------------------------


def source_path(settings: Settings, snapshot: bool) -> Path:
    """The file a read opens: the warehouse, or (``snapshot``) the analyst snapshot."""
    if not snapshot:
        return settings.warehouse
    if not settings.snapshot.exists():
        raise InputMissingError(
            f"no analyst snapshot at {settings.snapshot}: run `mallscore score` first "
            "(or set MALLSCORE_ANALYST_PATH to where it is published)"
        )
    return settings.snapshot


def _open(settings: Settings, source: Path, allowed: Path | None) -> duckdb.DuckDBPyConnection:
    """``source`` read-only; file access limited to ``allowed`` (a temporary output name), or none at all."""
    from mallscore.warehouse import connect

    con = connect(
        source, read_only=True, lock_timeout=settings.lock_timeout, allowed_paths=[allowed] if allowed else ()
    )
    try:
        con.execute("set enable_progress_bar = false")
    except BaseException:
        con.close()
        raise
    return con


# --- writing -----------------------------------------------------------------------------------------


def format_for(fmt: str | None, output: Path | None, terminal: bool) -> str:
    """The format to write: the one asked for, else the output file's extension, else table on a terminal, else csv."""
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise UsageError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    elif output is not None:
        fmt = FILE_FORMATS.get(output.suffix.lower().lstrip("."), "csv")
    else:
        fmt = "table" if terminal else "csv"
    if fmt == "parquet" and output is None:
        raise UsageError("--format parquet needs --output FILE (Parquet is not written to a terminal or a pipe)")
    if fmt == "table" and output is not None:
        raise UsageError("--format table is for the terminal; write a file as csv, jsonl or parquet")
    return fmt


def _check_output(settings: Settings, output: Path) -> None:
    if output.is_dir():
        raise UsageError(f"--output {output} is a folder; give a file name")
    if not output.parent.is_dir():
        raise UsageError(f"--output {output}: the folder {output.parent} does not exist")
    protected = {settings.warehouse, settings.snapshot}
    protected |= {p.with_name(p.name + ".wal") for p in protected}
    if output.resolve() in {p.resolve() for p in protected}:
        raise UsageError(f"--output {output} is the warehouse or the analyst snapshot; choose another file")


def _copy_to(con: duckdb.DuckDBPyConnection, query: Query, fmt: str, path: Path) -> int:
    # the path is bound into COPY as text: it is a temporary name this module made, the only path allowed
    target = str(path).replace("'", "''")
    sql = query.sql.rstrip().rstrip(";")
    return int(con.execute(f"copy ({sql}) to '{target}' ({_COPY_OPTIONS[fmt]})", query.params).fetchall()[0][0])


def export_to_file(
    settings: Settings, build: Callable[..., Query], fmt: str, output: Path, *, snapshot: bool = False
) -> ExportResult:
    """Write the rows of ``build`` to ``output`` in ``fmt`` (csv, jsonl, parquet), atomically."""
    from mallscore.snapshot import analyst_group_id, share_file

    output = Path(output)
    source = source_path(settings, snapshot)
    _check_output(settings, output)
    gid = analyst_group_id(settings)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    con = _open(settings, source, tmp)
    try:
        query = build(con, source)
        rows = _copy_to(con, query, fmt, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    try:
        share_file(tmp, gid)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(rows, fmt, str(output), str(source))


def export_to_stream(
    settings: Settings, build: Callable[..., Query], fmt: str, stream: BinaryIO, *, snapshot: bool = False
) -> ExportResult:
    """Write the rows of ``build`` to ``stream`` (standard output) as csv or jsonl: the same bytes as a file."""
    if fmt not in ("csv", "jsonl"):
        raise UsageError(f"--format {fmt} cannot be written to standard output")
    source = source_path(settings, snapshot)
    folder = Path(tempfile.mkdtemp(prefix="mallscore-export-"))  # private (0700)
    try:
        tmp = folder / f"rows.{fmt}"
        con = _open(settings, source, tmp)
        try:
            rows = _copy_to(con, build(con, source), fmt, tmp)
        finally:
            con.close()
        with tmp.open("rb") as f:
            shutil.copyfileobj(f, stream, 1 << 20)
        stream.flush()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return ExportResult(rows, fmt, None, str(source))


def read_rows(
    settings: Settings, build: Callable[..., Query], *, snapshot: bool = False, max_rows: int = TABLE_ROWS
) -> tuple[list[str], list[tuple], bool]:
    """The column names and first ``max_rows`` rows of ``build``, for a table on the terminal, and whether more exist."""
    source = source_path(settings, snapshot)
    con = _open(settings, source, None)
    try:
        query = build(con, source)
        cursor = con.execute(query.sql, query.params)
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchmany(max_rows + 1)
        return columns, rows[:max_rows], len(rows) > max_rows
    finally:
        con.close()
