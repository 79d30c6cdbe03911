-- Ids of this load's plain rows (written straight into raw_customers, see insert_plain.sql) that
-- are also given on a line of the stage. Any such id sends the load through the stage: every line
-- of an id given twice is rejected with its line number, which a plain row written straight does
-- not keep.
select count(*) as clashes
from mallscore_ingest_stage as s
semi join raw_customers as r
    on r.customer_id = s.customer_id
    and r.load_id = $load_id
