-- Whether raw_customers holds any customer yet (a direct load then checks its ids against them).
select count(*) as customers
from (select 1 from raw_customers limit 1)
