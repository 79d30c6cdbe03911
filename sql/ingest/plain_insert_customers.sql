-- Upsert of the plain rows, step 2: insert the new and changed customers (the newest load wins),
-- as insert_customers.sql does for the stage. The join is built on ingest_plain_upserts: used when
-- those are fewer than the customers left in raw_customers (else plain_insert_most.sql).
insert into raw_customers (customer_id, gender, age, annual_income, spending_score, load_id, updated_at)
select p.customer_id, p.gender, p.age, p.annual_income, p.spending_score, $load_id, $now
from mallscore_ingest_plain as p
semi join ingest_plain_upserts using (customer_id)
