"""Publish the current ``segments`` (and their ``scoring_runs`` rows) to the mall's own database.

Campaign tools, sync jobs and ``pg_dump`` read the published table while the
nightly job writes it, some of them in long REPEATABLE READ transactions. In
PostgreSQL only *row* changes keep an older snapshot whole (DROP, RENAME and
TRUNCATE are not MVCC-safe: a reader whose snapshot predates them sees an empty
table), so a publish never swaps or truncates the live table. Every publish is
one transaction on the target that only deletes, updates and inserts rows:

1. PostgreSQL: ``lock_timeout`` for the transaction and an advisory lock so two
   publishers queue instead of racing. Row changes take ROW EXCLUSIVE, which
   does not conflict with the ACCESS SHARE lock of a reader or of ``pg_dump``:
   readers never make a publish wait, and a publish never makes them wait.
2. The target tables are created when missing, with columns and types derived
   from the warehouse's catalog (``sql/03_scoring_runs.sql``,
   ``sql/04_segments.sql``) through one type mapping (:func:`column_type`).
3. ``<table>_runs`` records which run the target holds (``is_current``).
   When it holds an earlier run of this warehouse the publish is
   *incremental*: the rows scored by later runs are loaded into a temporary
   staging table and applied with one UPDATE and one INSERT; customers no
   longer in ``segments`` are deleted (those ``segment_archive`` holds but
   ``segments`` does not, then by comparing every key if the row count says
   others are gone). Otherwise, or with ``full=True``, it is *full*: on
   PostgreSQL every row of the target is read back (``COPY ... TO``) and
   compared with ``segments`` in DuckDB, and only the differences are written
   the same way; when more than :data:`REWRITE_SHARE` of the rows differ (a new
   model), and on other databases, every row is deleted and loaded again. Into
   a table created by this publish (invisible to everyone until commit) the
   load is a bare bulk COPY with the key built afterwards.
4. The row count is checked against ``segments``; an incremental publish whose
   result does not match (rows changed behind mallscore's back) becomes a full
   one in the same transaction. Then the run rows are upserted, the runs'
   ``segment_changes`` rows appended to ``<table>_changes`` (when the warehouse
   has that feed), and the transaction commits.

Loads go through ``COPY ... FROM STDIN (FORMAT binary)`` fed with DuckDB's
Arrow batches encoded by :mod:`mallscore.pgcopy` on PostgreSQL, and chunked
``executemany`` inserts on any other SQLAlchemy database (the generic path).
A failure at any step (or a killed process) rolls everything back: the old
rows stay intact and readable.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import duckdb

from mallscore.database import (
    classify_error,
    create_engine,
    driver_errors,
    is_postgres,
    mask_url,
    scrub,
    split_table_name,
)
from mallscore.errors import EXIT_UNEXPECTED, InputMissingError, MallscoreError
from mallscore.publication import BatchHook, Publication, qualified
from mallscore.published_schema import read_source
from mallscore.settings import DEFAULT_PUBLISH_TABLE, Settings

if TYPE_CHECKING:  # pragma: no cover
    pass

DEFAULT_TABLE = DEFAULT_PUBLISH_TABLE
BATCH_ROWS = 100_000


def publish_segments(settings: Settings, url: str, table: str = DEFAULT_TABLE, *, full: bool = False) -> dict:
    """Open the warehouse read-only and publish its segments to ``url`` (see module docstring)."""
    from mallscore.warehouse import open_warehouse

    with open_warehouse(settings, read_only=True) as con:
        return publish_from(con, url, table, lock_timeout=settings.lock_timeout, full=full)


def publish_after_run(settings: Settings, run_id: str) -> dict | None:
    """The nightly job's optional last step: publish when ``settings.publish_url`` is set (else None).

    The run is already committed, so a failure is returned, not raised:
    ``{"status": "failed", "exit_code": 75 or 78, "error": ...}`` with every
    password masked; success is :func:`publish_segments`'s result with
    ``status`` published. The table is ``settings.publish_table``
    (``MALLSCORE_PUBLISH_TABLE``, default :data:`DEFAULT_TABLE`).
    """
    url, table = settings.publish_url, settings.publish_table
    if not url:
        return None
    try:
        return {"status": "published", **publish_segments(settings, url, table)}
    except Exception as exc:  # whatever it was, the committed run stands; say so and keep the exit code
        code = exc.exit_code if isinstance(exc, MallscoreError) else EXIT_UNEXPECTED
        error = scrub((str(exc).splitlines() or [type(exc).__name__])[0], url)
        return {
            "status": "failed",
            "target": mask_url(url),
            "table": table,
            "exit_code": code,
            "error": error,
            "message": f"run {run_id} succeeded and is committed, but publishing its segments to {table} failed "
            f"({error}); retry with `mallscore publish`",
        }


def publish_from(
    con: duckdb.DuckDBPyConnection,
    url: str,
    table: str = DEFAULT_TABLE,
    *,
    full: bool = False,
    lock_timeout: float = 60.0,
    batch_rows: int = BATCH_ROWS,
    bulk: bool = True,
    on_batch: BatchHook | None = None,
) -> dict:
    """Publish ``segments`` from an open warehouse connection; returns what was published.

    ``full=True`` rewrites every row even when an incremental publish is
    possible. ``bulk=False`` forces the generic insert path even on PostgreSQL
    (for the benchmark). ``on_batch`` is called with the running row count
    after each loaded batch (progress; tests use it to fail mid-publish).
    """
    schema, name = split_table_name(table)
    source = read_source(con)
    if source.rows == 0:
        raise InputMissingError(
            "no segments to publish: the warehouse's segments table is empty (run `mallscore score` first)"
        )
    engine = create_engine(url)
    started = time.perf_counter()
    published_at = datetime.now(UTC).replace(tzinfo=None)
    try:
        with engine.begin() as conn:
            copy = bulk and is_postgres(engine)
            job = Publication(conn, con, source, schema, name, copy, batch_rows, on_batch)
            if is_postgres(engine):
                job.lock(lock_timeout)
            outcome = job.run(full, published_at)
    except MallscoreError:
        raise
    except driver_errors() as exc:
        raise classify_error(exc, url, f"publishing {table} to") from None
    finally:
        engine.dispose()
    return {
        "target": mask_url(url),
        "table": table,
        "runs_table": qualified(schema, name + "_runs"),
        **outcome,
        "run_id": source.run_id,
        "rows": source.rows,
        "run_ids": source.run_ids,
        "method": "copy" if copy else "insert",
        "seconds": round(time.perf_counter() - started, 3),
        "published_at": published_at.isoformat(timespec="seconds"),
    }
