"""What is in the warehouse right now: counts, recent loads, rejected rows."""

from __future__ import annotations

import duckdb

from mallscore.warehouse import relation_counts


def warehouse_status(con: duckdb.DuckDBPyConnection, recent: int = 5) -> dict:
    """Row counts of every relation, the most recent loads, and rejected rows by reason."""
    loads = con.execute(
        """
        select load_id, source, started_at, rows_in_file, loaded, rejected, inserted, updated, unchanged
        from ingest_loads order by started_at desc, load_id desc limit ?
        """,
        [recent],
    ).fetchall()
    load_cols = [
        "load_id",
        "source",
        "started_at",
        "rows_in_file",
        "loaded",
        "rejected",
        "inserted",
        "updated",
        "unchanged",
    ]
    rejected = con.execute(
        """
        select coalesce(load_id, run_id) as batch, regexp_replace(reason, '"[^"]*"|[0-9.]+', 'x', 'g') as kind, count(*)
        from rejected_rows group by all order by 3 desc limit 20
        """
    ).fetchall()
    return {
        "relations": relation_counts(con),
        "recent_loads": [dict(zip(load_cols, row)) for row in loads],
        "rejected_by_reason": [{"batch": b, "reason": k, "rows": n} for b, k, n in rejected],
    }
