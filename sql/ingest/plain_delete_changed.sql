-- Upsert of the plain rows, step 1: remove the customers they change (ingest_plain_upserts, not
-- new), one range of customer ids at a time ($lo..$hi, from plain_id_cuts.sql), as
-- delete_changed.sql does for the stage.
delete from raw_customers
where customer_id between $lo and $hi
  and customer_id in (
      select customer_id
      from ingest_plain_upserts
      where not is_new
        and customer_id between $lo and $hi
  )
