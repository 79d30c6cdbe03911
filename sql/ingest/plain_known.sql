-- How many ids of the first plain batch (plain_head) are customers already loaded: a file that
-- updates customers usually shows it in its first block, before anything is written.
select count(*) as known
from plain_head
semi join raw_customers using (customer_id)
