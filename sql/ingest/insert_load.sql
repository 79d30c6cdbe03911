-- The load's own row, in the same transaction as its customers and rejected rows.
insert into ingest_loads
values ($load_id, $source, $started, $now, $rows_in, $loaded, $rejected, $inserted, $updated, $unchanged)
