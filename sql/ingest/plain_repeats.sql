-- Ids on more than one plain row of this load (written straight into raw_customers). The reader
-- proves there are none while the ids arrive in increasing order; only otherwise is this counted.
select count(*) as repeats
from (
    select customer_id
    from raw_customers
    where load_id = $load_id
    group by customer_id
    having count(*) > 1
)
