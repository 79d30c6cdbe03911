"""One publication inside the target's transaction: read the warehouse, decide the mode, change rows, record the run.

:mod:`mallscore.publish` opens the transaction and reports; this module does
the work described there (steps 2 to 4): the schema derived from the
warehouse's catalog, the incremental or full row changes, the run rows and the
change feed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import duckdb

from mallscore.errors import BadInputError, ConfigError, InputMissingError
from mallscore.published_count import CommittedCount
from mallscore.published_feed import append_change_feed, query_batches
from mallscore.published_schema import Column, Source, TargetCatalog, quote, sa_table, select_list

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

INSERT_CHUNK_ROWS = 10_000
# A staging table of at least this many rows is analyzed before the statements that join it to the target;
# below it the planner's estimate from the table's size serves as well (10,000 rows: 5% off an incremental
# publish, the same plan).
ANALYZE_STAGED_ROWS = 100_000
# Up to this many keys to delete travel as one array parameter; more go through a staging table.
ARRAY_DELETE_KEYS = 100_000
# A full publish writes only the rows that differ, unless more than this share differs: then it rewrites all.
REWRITE_SHARE = 0.25
# Columns the runs table has beyond scoring_runs': when the rows were published, and the run the target holds.
RUN_EXTRA_COLUMNS: tuple[tuple[str, str], ...] = (("published_at", "TIMESTAMP"), ("is_current", "BOOLEAN"))

BatchHook = Callable[[int], None]


def qualified(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


# --- one publication: decide the mode, change rows, record the run -----------------------------


class Publication:
    """The steps of one publish inside the caller's transaction ``conn`` (SQLAlchemy, any dialect)."""

    def __init__(self, conn, con, source: Source, schema, name, copy: bool, batch_rows: int, on_batch) -> None:
        import sqlalchemy as sa

        self.conn, self.con, self.source = conn, con, source
        self.schema, self.name, self.copy = schema, name, copy
        self.batch_rows, self.on_batch = batch_rows, on_batch
        self.metadata = sa.MetaData()
        self.target = sa_table(self.metadata, schema, name, source.segment_columns)
        run_columns = source.run_columns + [Column(c, t, True, False) for c, t in RUN_EXTRA_COLUMNS]
        self.runs = sa_table(self.metadata, schema, name + "_runs", run_columns)
        self.stats = {"inserted": 0, "updated": 0, "deleted": 0}
        self.lock_timeout_ms = 60_000  # lock() sets the caller's

    # -- steps

    def lock(self, lock_timeout: float) -> None:
        """PostgreSQL: bound every lock wait, and queue behind another publisher of the same table."""
        import sqlalchemy as sa

        self.lock_timeout_ms = int(max(lock_timeout, 0.001) * 1000)
        self.conn.execute(sa.text("select set_config('lock_timeout', :v, true)"), {"v": f"{self.lock_timeout_ms}ms"})
        # the incremental statements join a small staging table to the target: probe its key (SSD-like costs)
        # rather than scan it; hash joins of whole tables (the key comparison) get memory to stay in one pass
        self.conn.exec_driver_sql("set local random_page_cost = 1.1")
        self.conn.exec_driver_sql("set local work_mem = '64MB'")
        self.conn.execute(
            sa.text("select pg_advisory_xact_lock(hashtext(:k))"),
            {"k": f"mallscore.publish:{qualified(self.schema, self.name)}"},
        )

    def run(self, full: bool, published_at: datetime) -> dict:
        """Change the target's rows to equal segments, then record the runs; returns mode and counts."""
        inspector = TargetCatalog(self.conn, self.schema, [self.name, self.runs.name, self.name + "_changes"])
        self.catalog = inspector
        exists = inspector.has_table(self.name)
        held = self._held_run(inspector)
        self._ensure_runs_table(inspector)
        reason = None
        if not exists:
            mode, reason = "full", "new table"
            count = self._create_and_load()
        else:
            before = set(inspector.column_names(self.name))
            self._check_columns(inspector)
            added = [c.name for c in self.target.columns if c.name not in before]
            reason = "--full" if full else self._why_not_incremental(held)
            if added and not reason:  # the rows already there need the new columns' values too
                reason = f"the target table gained column(s) {', '.join(added)}"
            mode = "full" if reason else "incremental"
            if mode == "incremental":
                count = self._incremental(held)
                if count != self.source.rows:  # rows changed behind our back: compare every row
                    mode, reason = "full", f"the target did not hold run {held[0]} exactly"
            if mode == "full":
                count = self._rewrite()
        if count != self.source.rows:
            self._check_unique_keys()
            raise InputMissingError(
                f"segments changed while publishing ({self.source.rows} rows counted, {count} in the target); "
                "nothing was published"
            )
        self._record_runs(published_at)
        changes = append_change_feed(self, held)
        return {
            "mode": mode,
            "reason": reason,
            "previous_run_id": held[0] if held else None,
            "rows_written": sum(self.stats.values()),
            **self.stats,
            "changes_appended": changes,
        }

    def _check_unique_keys(self) -> None:
        """BadInputError (65) when segments holds a key twice (a target without the key would take it)."""
        keys = ", ".join(quote(k) for k in self.source.keys)
        rows, distinct = self.con.execute(f"select count(*), count(distinct ({keys})) from segments").fetchall()[0]
        if rows != distinct:
            raise BadInputError(
                f"segments violates its key constraint: {rows - distinct} duplicated {', '.join(self.source.keys)} "
                "value(s); nothing was published"
            )

    def _held_run(self, inspector) -> tuple[str, datetime] | None:
        """The run the target holds (``is_current`` in the runs table), with its start time."""
        import sqlalchemy as sa

        runs_name = self.runs.name
        if not inspector.has_table(runs_name):
            return None
        present = set(inspector.column_names(runs_name))
        if not {"run_id", "started_at", "is_current"} <= present:
            return None
        rows = self.conn.execute(
            sa.select(self.runs.c.run_id, self.runs.c.started_at).where(self.runs.c.is_current.is_(True))
        ).fetchall()
        return (rows[0][0], rows[0][1]) if len(rows) == 1 else None

    def _why_not_incremental(self, held) -> str | None:
        if held is None:
            return "the target records no run"
        known = self.con.execute("select started_at from scoring_runs where run_id = $r", {"r": held[0]}).fetchall()
        if not known or known[0][0] != held[1]:
            return f"the target holds run {held[0]}, which this warehouse did not run"
        return None

    def _ensure_runs_table(self, inspector) -> None:
        """Create the runs table, or add the columns an older publish did not have (one-time, nullable)."""
        if not inspector.has_table(self.runs.name):
            self.runs.create(self.conn)
            return
        self.add_columns(inspector, self.runs)

    def add_columns(self, inspector, table, nullable_only: bool = False) -> list[str]:
        """Add the columns of ``table`` an older target lacks (``nullable_only``: only those); return the rest."""
        present = set(inspector.column_names(table.name))
        preparer, left = self.conn.dialect.identifier_preparer, []
        for column in (c for c in table.columns if c.name not in present):
            if nullable_only and not column.nullable:
                left.append(column.name)
                continue
            kind, name = column.type.compile(dialect=self.conn.dialect), preparer.quote(column.name)
            self.conn.exec_driver_sql(f"alter table {preparer.format_table(table)} add column {name} {kind}")
        return left

    def _check_columns(self, inspector) -> None:  # an older target gets the nullable columns added since
        missing = self.add_columns(inspector, self.target, nullable_only=True)
        if missing:
            raise ConfigError(
                f"the target table {qualified(self.schema, self.name)} has no column(s) {', '.join(missing)}; "
                "add them or publish to another table"
            )

    def _create_and_load(self) -> int:
        """First publish: a new table nobody else can see before commit, bulk-loaded, key built after."""
        import sqlalchemy as sa

        if not self.copy:
            self.target.create(self.conn)
            self.stats["inserted"] = self._load(self.target, self._segments())
            return self.stats["inserted"]
        bare = sa_table(sa.MetaData(), self.schema, self.name, self.source.segment_columns, key=False)
        bare.create(self.conn)
        self.stats["inserted"] = self._load(bare, self._segments())
        preparer = self.conn.dialect.identifier_preparer
        keys = ", ".join(preparer.quote(k) for k in self.source.keys)
        self.conn.exec_driver_sql(
            f"alter table {preparer.format_table(bare)} add constraint {preparer.quote(self.name + '_pkey')} "
            f"primary key ({keys})"
        )
        self.conn.exec_driver_sql(f"analyze {preparer.format_table(bare)}")
        return self.stats["inserted"]

    def _rewrite(self) -> int:
        """Full publish into the live table (row changes only): write the rows that differ, or all of them."""
        if self.copy:
            count = self._write_differences()
            if count is not None:
                return count
        self.stats["deleted"] += self.conn.execute(self.target.delete()).rowcount
        inserted = self._load(self.target, self._segments())
        self.stats["inserted"] += inserted
        return inserted

    def _write_differences(self) -> int | None:
        """Compare every row of the target with segments (in DuckDB) and write only the differences.

        The target's rows are read with ``COPY ... TO STDOUT (FORMAT csv)``
        into a temporary file and joined with ``segments`` in DuckDB. Returns
        the target's row count after, or None (nothing written) when more than
        :data:`REWRITE_SHARE` of the rows differ or the rows cannot be read
        back exactly: deleting and re-loading every row is cheaper then.
        """
        import pyarrow.compute as pc

        differences = self._differences()
        if differences is None:
            return None
        rows_before, changed = differences
        before = dict(self.stats)
        if changed is not None:
            gone = changed.column("gone")
            upserts = changed.filter(pc.invert(gone)).drop_columns(["gone", "gone_key"])
            if upserts.num_rows:
                self._upsert(iter(upserts.to_batches(self.batch_rows)))
            removed = changed.filter(gone).select(["gone_key"]).rename_columns(self.source.keys)
            if removed.num_rows:
                self._delete_keys(iter(removed.to_batches(self.batch_rows)), listed=True)
        return rows_before + self.stats["inserted"] - before["inserted"] - (self.stats["deleted"] - before["deleted"])

    def _differences(self):
        import pyarrow as pa
        from psycopg import sql

        from mallscore import pgcopy

        names = [c.name for c in self.source.segment_columns]
        key = self.source.keys[0]
        if len(self.source.keys) != 1:
            return None
        cursor = self.con.cursor()
        try:
            schema = cursor.sql(self._query() + " limit 0").to_arrow_reader(1).schema
        finally:
            cursor.close()
        target = sql.Identifier(self.schema, self.name) if self.schema else sql.Identifier(self.name)
        select = sql.SQL("select {} from {}").format(sql.SQL(", ").join(sql.Identifier(n) for n in names), target)
        differs = " or ".join(f"s.{quote(n)} is distinct from t.{quote(n)}" for n in names if n != key)
        query = (
            f"select {', '.join('s.' + quote(n) for n in names)}, s.{quote(key)} is null as gone, "
            f"t.{quote(key)} as gone_key from segments as s full outer join mallscore_target_rows as t "
            f"on s.{quote(key)} = t.{quote(key)} where s.{quote(key)} is null or t.{quote(key)} is null "
            f"or {differs}"
        )
        with (
            self.conn.connection.driver_connection.cursor() as cur,
            pgcopy.copy_out(cur, select, schema) as target_rows,
        ):
            cursor = self.con.cursor()
            try:
                cursor.register("mallscore_target_rows", target_rows.reader())
                limit = self.source.rows * REWRITE_SHARE
                batches, found = [], 0
                for batch in cursor.sql(query).to_arrow_reader(self.batch_rows):
                    batches.append(batch)
                    found += batch.num_rows
                    if found > limit:
                        return None
            except (pa.ArrowInvalid, duckdb.Error):  # a value that does not read back exactly: rewrite all rows
                return None
            finally:
                cursor.close()
        return target_rows.rows, pa.Table.from_batches(batches) if batches else None

    def _incremental(self, held) -> int:
        """Upsert the rows scored after the held run, delete customers no longer in segments; returns the row count."""
        where = (
            "where not exists (select 1 from scoring_runs as r where r.run_id = segments.run_id "
            "and (r.started_at < $started or (r.started_at = $started and r.run_id <= $run)))"
        )
        # PostgreSQL: the rows the target holds now, counted beside the writes (mallscore/published_count.py)
        aside = CommittedCount(self.conn.engine, self.target, self.lock_timeout_ms) if self.copy else None
        inserted = self.stats["inserted"]
        try:
            self._upsert(self._segments(where, {"started": held[1], "run": held[0]}))
        finally:  # the thread ends before the engine is disposed, whatever happened here
            before = aside.result() if aside is not None else None
        count = self._count() if before is None else before + self.stats["inserted"] - inserted
        if count > self.source.rows and self.source.archive:
            # a run removes a customer by moving its row to segment_archive: history, but no current segment
            keys = ", ".join(quote(k) for k in self.source.keys)
            # only the rows archived by the runs after the held one (the feed's "removed" side); rows archived
            # before archived_by_run existed are caught by the key comparison below
            removed = (
                f"select distinct {keys} from segment_archive as a where a.archived_by_run in "
                "(select run_id from scoring_runs as r where r.started_at > $started "
                "or (r.started_at = $started and r.run_id > $run)) "
                f"and not exists (select 1 from segments as s where {self._key_match('s', 'a')}) order by {keys}"
            )
            since = {"started": held[1], "run": held[0]}
            count -= self._delete_keys(query_batches(self.con, removed, since, self.batch_rows), listed=True)
        if count > self.source.rows:  # removed some other way: compare every key
            every_key = self._query(columns=self._key_columns())
            count -= self._delete_keys(query_batches(self.con, every_key, None, self.batch_rows), listed=False)
        return count

    def _upsert(self, batches) -> None:
        """Load rows into a staging table, then update the target's rows with their keys and insert the others."""
        import sqlalchemy as sa

        stage = self._temp_table("stage", self.source.segment_columns)
        staged = self._load(stage, batches)
        if staged:
            target, keys = self.target, self.source.keys
            match = sa.and_(*(target.c[k] == stage.c[k] for k in keys))
            values = {c.name: stage.c[c.name] for c in target.columns if c.name not in keys}
            names = [c.name for c in target.columns]
            if self.conn.dialect.name == "postgresql":
                # one statement: the UPDATE returns the keys it found and the INSERT takes the other staged
                # rows (an anti-join with the updated keys, not the whole target: 12% off an incremental publish);
                # it returns both counts (the driver's rowcount of such a statement is -1)
                key_columns = [target.c[k] for k in keys]
                found = target.update().where(match).values(values).returning(*key_columns).cte("mallscore_updated")
                other = sa.and_(*(found.c[k] == stage.c[k] for k in keys))
                fresh = sa.select(*(stage.c[n] for n in names)).where(~sa.exists().where(other))
                added = target.insert().from_select(names, fresh).returning(*key_columns).cte("mallscore_inserted")
                counts = sa.select(
                    sa.select(sa.func.count()).select_from(found).scalar_subquery(),
                    sa.select(sa.func.count()).select_from(added).scalar_subquery(),
                )
                updated = self.conn.execute(counts).one()[0]
            else:
                updated = self.conn.execute(target.update().where(match).values(values)).rowcount
                fresh = sa.select(*(stage.c[n] for n in names)).where(~sa.exists().where(match))
                self.conn.execute(target.insert().from_select(names, fresh))
            self.stats["updated"] += updated
            self.stats["inserted"] += staged - updated  # staged keys are unique (segments' key)
        self._drop(stage)

    def _key_columns(self) -> list[Column]:
        return [c for c in self.source.segment_columns if c.key]

    def _key_match(self, left: str, right: str) -> str:
        return " and ".join(f"{left}.{quote(k)} = {right}.{quote(k)}" for k in self.source.keys)

    def _delete_keys(self, batches, *, listed: bool) -> int:
        """Delete the target rows whose key ``batches`` lists (``listed``) or does not list; returns how many."""
        import sqlalchemy as sa

        key_columns = self._key_columns()
        if listed and self.conn.dialect.name == "postgresql" and [c.duck_type for c in key_columns] == ["BIGINT"]:
            # a few keys (the customers the runs since removed): one statement with the keys as an array,
            # rather than a staging table created, loaded, analyzed and dropped (5 round trips)
            batches = list(batches)
            if sum(b.num_rows for b in batches) <= ARRAY_DELETE_KEYS:
                listed_keys = [k for batch in batches for k in batch.column(0).to_pylist()]
                if not listed_keys:
                    return 0
                column = self.target.c[key_columns[0].name]
                array = sa.bindparam("keys", listed_keys, type_=sa.ARRAY(sa.BigInteger))
                deleted = self.conn.execute(self.target.delete().where(column == sa.func.any(array))).rowcount
                self.stats["deleted"] += deleted
                return deleted
            batches = iter(batches)
        keys = self._temp_table("keys", key_columns)
        self._load(keys, batches, report=False)
        match = sa.and_(*(self.target.c[k] == keys.c[k] for k in self.source.keys))
        found = sa.exists().where(match)
        deleted = self.conn.execute(self.target.delete().where(found if listed else ~found)).rowcount
        self._drop(keys)
        self.stats["deleted"] += deleted
        return deleted

    def _record_runs(self, published_at: datetime) -> None:
        runs = self.runs
        self.conn.execute(runs.update().where(runs.c.is_current.is_(True)).values(is_current=False))
        ids = [r[0] for r in self.source.runs]
        if ids:
            self.conn.execute(runs.delete().where(runs.c.run_id.in_(ids)))
            names = [c.name for c in self.source.run_columns]
            self.conn.execute(
                runs.insert(),
                [
                    {**dict(zip(names, r)), "published_at": published_at, "is_current": r[0] == self.source.run_id}
                    for r in self.source.runs
                ],
            )

    # -- helpers

    def _count(self) -> int:
        import sqlalchemy as sa

        return int(self.conn.execute(sa.select(sa.func.count()).select_from(self.target)).scalar_one())

    def _temp_table(self, suffix: str, columns: list[Column]):
        table = sa_table(self.metadata, None, f"mallscore_publish_{suffix}", columns, key=False, temp=True)
        table.create(self.conn)
        return table

    def _drop(self, table) -> None:
        table.drop(self.conn)
        self.metadata.remove(table)

    def _query(self, where: str = "", columns: list[Column] | None = None) -> str:
        names = select_list(columns or self.source.segment_columns)
        keys = ", ".join(quote(k) for k in self.source.keys)
        return f"select {names} from segments {where} order by {keys}"

    def _segments(self, where: str = "", params: dict | None = None):
        return query_batches(self.con, self._query(where), params, self.batch_rows)

    def _load(self, table, batches: Iterator[pa.RecordBatch], report: bool = True, binary: bool = True) -> int:
        """Bulk-load Arrow batches into ``table`` (COPY on PostgreSQL, chunked inserts elsewhere).

        ``binary=False`` sends CSV (for columns that may hold NULLs, which binary encoding refuses).
        """
        hook = self.on_batch if report else None
        if self.copy:
            from psycopg import sql

            from mallscore import pgcopy

            ident = sql.Identifier(table.schema, table.name) if table.schema else sql.Identifier(table.name)
            with self.conn.connection.driver_connection.cursor() as cur:
                loaded = pgcopy.copy_in(cur, ident, batches, hook, binary=binary)
        else:
            loaded = 0
            for batch in batches:
                records = batch.to_pylist()
                for start in range(0, len(records), INSERT_CHUNK_ROWS):
                    self.conn.execute(table.insert(), records[start : start + INSERT_CHUNK_ROWS])
                loaded += batch.num_rows
                if hook:
                    hook(loaded)
        if self.copy and table.name.startswith("mallscore_publish_") and loaded >= ANALYZE_STAGED_ROWS:
            self.conn.exec_driver_sql(f"analyze {self.conn.dialect.identifier_preparer.format_table(table)}")
        return loaded
