-- Ids on more than one plain row of this load (mallscore_ingest_plain): as plain_repeats.sql,
-- counted only when the reader saw the ids out of increasing order.
select count(*) as repeats
from (
    select customer_id
    from mallscore_ingest_plain
    group by customer_id
    having count(*) > 1
)
