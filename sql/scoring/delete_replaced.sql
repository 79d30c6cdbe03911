-- Remove the archived rows from the current segments (the same transaction as the archive insert).
delete from segments
where customer_id in (select customer_id from run_candidates)
