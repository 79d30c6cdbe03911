"""The scoring run's memory: the DuckDB cap while a run replaces segments, and freed buffers given back."""

from __future__ import annotations

import duckdb

from mallscore.warehouse import size_bytes

# Moving a run's replaced segments to the archive joins them with the customers the run wrote twice in
# one transaction (insert, then delete). Under the 64MB cap, the delete of 3M replaced customers failed
# about every other time with "failed to pin block" (the buffer pool full of the uncommitted archive
# rows), on main as well; with 256MB it never did, at 10M neither. The cap cannot come back down
# while the transaction holds those rows, so a run that replaces segments keeps the raised cap until
# it has committed; a run into an empty segments table (the first night) keeps the job's cap.
REPLACE_MEMORY_LIMIT = "256MB"


# A run that replaces many segments archives (then deletes) them in ranges of customer ids holding about
# this many of the run's rows each: under REPLACE_MEMORY_LIMIT a join of 10M replaced customers spills; four
# ranges do not (10M customers replaced: archive 8.8 s in one statement, 4.5 s in four). `score --all`
# copies every segment without a join (sql/scoring/archive_all.sql).
REPLACE_CHUNK_ROWS = 2_500_000


def replace_ranges(con: duckdb.DuckDBPyConnection, rows: int) -> list[tuple[int, int]]:
    """Inclusive customer id ranges covering segments for a run that wrote ``rows`` rows: about
    REPLACE_CHUNK_ROWS of them in each if ids are even (one range for a night with few changes)."""
    lo, hi = con.execute("select min(customer_id), max(customer_id) from segments").fetchall()[0]
    if lo is None or not rows:
        return []
    parts = max(1, -(-rows // REPLACE_CHUNK_ROWS))
    step = -(-(hi - lo + 1) // parts)
    return [(start, min(hi, start + step - 1)) for start in range(lo, hi + 1, step)]


def raise_memory_for_replacing(con: duckdb.DuckDBPyConnection) -> str | None:
    """Raise the cap to REPLACE_MEMORY_LIMIT when segments has rows to replace; return the cap to restore."""
    current = str(con.execute("select current_setting('memory_limit')").fetchall()[0][0])
    if (
        size_bytes(REPLACE_MEMORY_LIMIT) <= size_bytes(current)
        or not con.execute("select exists (from segments)").fetchall()[0][0]
    ):
        return None
    con.execute(f"set memory_limit = '{REPLACE_MEMORY_LIMIT}'")
    return current


def restore_memory(con: duckdb.DuckDBPyConnection, previous: str | None) -> None:
    """Put the job's cap back after the transaction (best effort: the connection closes soon anyway)."""
    if previous is not None:
        try:
            con.execute(f"set memory_limit = '{previous}'")
        except duckdb.Error:
            pass


def return_freed_memory() -> None:
    """Serve big allocations with mmap so freed batch buffers go back to the system (glibc only).

    glibc raises its mmap threshold after large frees and then keeps freed batch
    buffers in a fragmenting heap; with a fixed 1 MiB threshold a 10-million-row
    run peaked about 40 MiB lower. Process-wide, and only the thresholds change.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return  # not glibc: nothing to tune
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 1 << 20)
    mallopt(m_trim_threshold, 1 << 20)
