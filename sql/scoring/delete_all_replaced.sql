-- Remove the archived rows from the current segments when the run archived every one of them, all at once
-- without delete_replaced.sql's join, in the same transaction as the archive insert: `score --all`
-- (archive_all.sql, before the run writes) and a run whose archive_replaced.sql moved every older row (a new
-- model). The run's own rows stay.
delete from segments
where run_id <> $run_id
