-- Remove the archived rows from the current segments when the run archived every one of them
-- (archive_all.sql for `score --all`; archive_replaced.sql moving as many rows as segments holds,
-- a new model): all at once, without delete_replaced.sql's join, in the same transaction as the
-- archive insert.
delete from segments
