"""The change feed in the target: each published run's rows of ``segment_changes`` appended to ``<table>_changes``.

Part of one publication (:mod:`mallscore.publication`), in its transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import duckdb

from mallscore.published_schema import Column, sa_table, select_list, warehouse_columns

if TYPE_CHECKING:  # pragma: no cover
    from mallscore.publication import Publication


def append_change_feed(publication: Publication, held: tuple[str, datetime] | None) -> int | None:
    """Append the change feed of the runs this publish brings to ``<table>_changes``; None without a feed.

    Reads the warehouse's ``segment_changes`` (columns from its catalog, like
    every published table) only when it exists. The runs appended are those
    after ``held`` (every run when the target held none) whose rows are not in
    ``<table>_changes`` yet, so the table grows by exactly each run's feed,
    once, in the publication's transaction. Returns the rows appended.
    """
    import sqlalchemy as sa

    if not publication.source.feed:
        return None
    pub, con = publication, publication.con
    columns = [Column(c.name, c.duck_type, c.nullable, False) for c in warehouse_columns(con, "segment_changes")]
    changes = sa_table(pub.metadata, pub.schema, pub.name + "_changes", columns, key=False)
    if not pub.catalog.has_table(changes.name):
        changes.create(pub.conn)
        sa.Index(f"{pub.name}_changes_run_id", changes.c.run_id).create(pub.conn)
    else:
        pub.add_columns(pub.catalog, changes)  # a feed table from an older mallscore gets the columns since
    later = ""
    params: dict = {}
    if held is not None:
        later = "and (started_at > $started or (started_at = $started and run_id > $run))"
        params = {"started": held[1], "run": held[0]}
    # the runs after the one the target holds, from scoring_runs (reading the feed itself to find them
    # would pair every run's rows); a run without changes appends nothing
    runs = [
        r[0]
        for r in con.execute(
            f"select run_id from scoring_runs where status not in ('running', 'failed', 'abandoned', 'aborted') "
            f"{later}",
            params,
        ).fetchall()
    ]
    if not runs:
        return 0
    present = {r[0] for r in pub.conn.execute(sa.select(changes.c.run_id).where(changes.c.run_id.in_(runs)).distinct())}
    wanted = sorted(set(runs) - present)
    if not wanted:
        return 0
    query = f"select {select_list(columns)} from segment_changes where list_contains($runs, run_id) order by run_id, customer_id"
    return pub._load(changes, query_batches(con, query, {"runs": wanted}, pub.batch_rows), report=False, binary=False)


def query_batches(con: duckdb.DuckDBPyConnection, query: str, params: dict | None, batch_rows: int):
    """A query's rows as Arrow batches, streamed through a cursor so ``con`` stays usable."""
    cursor = con.cursor()
    try:
        yield from cursor.sql(query, params=params or None).to_arrow_reader(batch_rows)
    finally:
        cursor.close()
