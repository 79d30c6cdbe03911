-- Upsert, step 2: insert new and changed customers (the newest load wins).
insert into raw_customers
select v.customer_id, v.gender, v.age, v.annual_income, v.spending_score, $load_id, $now
from mallscore_ingest_stage as v
anti join raw_customers as r using (customer_id)
where v.reason is null
