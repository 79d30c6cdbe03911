"""The analyst snapshot is replaced atomically: between the copy and the rename, readers still get the whole old one."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from mallscore.scoring import score_customers
from mallscore.settings import Settings
from mallscore.snapshot import publish_snapshot
from mallscore.warehouse import connect
from tests.scoring_support import seed_customers


def _counts(path: Path) -> tuple:
    """What an analyst who opens ``path`` now sees: segments, and the runs that succeeded."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            "select (select count(*) from segments), "
            "(select list(run_id order by run_id) from scoring_runs where status = 'succeeded')"
        ).fetchall()[0]
    finally:
        con.close()


def test_a_reader_between_copy_and_rename_sees_the_whole_old_snapshot(scored_setup: Settings) -> None:
    first = score_customers(scored_setup)
    snapshot = scored_setup.snapshot
    old_bytes = snapshot.read_bytes()
    old = _counts(snapshot)
    assert old == (500, [first["run_id"]])
    seed_customers(scored_setup, known=0, new=40, seed=77)
    second = score_customers(scored_setup, publish=False)  # committed in the warehouse, not yet published
    assert second["rows_scored"] == 40
    new = (540, sorted([first["run_id"], second["run_id"]]))

    seen = []

    def reader_between_copy_and_rename(copy: Path) -> None:
        # a new analyst session opening the published path at the one moment a non-atomic writer would expose it
        seen.append(
            (snapshot.read_bytes() == old_bytes, _counts(snapshot), _counts(copy), copy.parent == snapshot.parent)
        )

    holder = os.open(snapshot, os.O_RDONLY)  # an analyst who opened the old snapshot before publishing
    con = connect(scored_setup.warehouse)
    try:
        assert publish_snapshot(con, scored_setup, before_replace=reader_between_copy_and_rename) == snapshot
        held = os.pread(holder, len(old_bytes) + 1, 0)
    finally:
        con.close()
        os.close(holder)

    assert seen == [(True, old, new, True)]  # the published file was byte-identical to the old one until the rename
    assert held == old_bytes  # the old file was replaced, not rewritten under its reader
    assert _counts(snapshot) == new
    assert not list(snapshot.parent.glob(f".{snapshot.name}.tmp-*"))
    assert snapshot.stat().st_mode & 0o777 == 0o600
