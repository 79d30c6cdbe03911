-- Ids given on more than one line of this input (every such line is rejected: the loader
-- will not guess which line is right). Lines rejected for another reason still count.
create or replace temp table ingest_duplicate_ids as
select customer_id
from mallscore_ingest_stage
where customer_id is not null
group by customer_id
having count(*) > 1
