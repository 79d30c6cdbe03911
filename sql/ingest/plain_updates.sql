-- How many of this load's plain rows (written straight into raw_customers, see insert_plain.sql)
-- are customers loaded before it. Any such row sends the load through the stage, which compares
-- old and new values (an unchanged customer keeps its row, a changed one is replaced).
with this_load as (
    select customer_id from raw_customers where load_id = $load_id
),

earlier as (
    select customer_id from raw_customers where load_id <> $load_id
)

select count(*) as updates
from this_load
inner join earlier using (customer_id)
