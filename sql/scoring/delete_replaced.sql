-- Remove the archived rows from the current segments (the same transaction as the archive insert), one range
-- of customer ids at a time, as archive_replaced.sql: the older rows of the customers this run wrote.
delete from segments
where run_id <> $run_id
    and customer_id between $lo and $hi
    and customer_id in (
        select customer_id from segments
        where run_id = $run_id and customer_id between $lo and $hi
        union all
        select try_cast(customer_id as bigint) from rejected_rows
        where run_id = $run_id and try_cast(customer_id as bigint) between $lo and $hi
    )
