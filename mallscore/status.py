"""What is in the warehouse right now: counts, recent loads, rejected rows.

Status only reads: the CLI opens the warehouse read-only (a missing one is exit
66, never created), so it cannot build relations a warehouse made by an older
version lacks; those are left out of the counts.
"""

from __future__ import annotations

import duckdb

from mallscore.warehouse import relation_counts, sql_files


def _present(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            "select table_name from duckdb_tables() where database_name = current_database() "
            "union all select view_name from duckdb_views() where database_name = current_database()"
        ).fetchall()
    }


def warehouse_status(con: duckdb.DuckDBPyConnection, recent: int = 5) -> dict:
    """Row counts of every relation there is, the most recent loads, and rejected rows by reason."""
    present = _present(con)
    files = [f for f in sql_files() if f.relation in present]
    if not {"ingest_loads", "rejected_rows"} <= present:
        return {"relations": relation_counts(con, files), "recent_loads": [], "rejected_by_reason": []}
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
        "relations": relation_counts(con, files),
        "recent_loads": [dict(zip(load_cols, row)) for row in loads],
        "rejected_by_reason": [{"batch": b, "reason": k, "rows": n} for b, k, n in rejected],
    }
