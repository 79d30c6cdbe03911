-- Remove the archived rows from the current segments (the same transaction as the archive insert),
-- one range of customer ids at a time, as archive_replaced.sql.
delete from segments
where customer_id between $lo and $hi
    and customer_id in (select customer_id from run_candidates where customer_id between $lo and $hi)
