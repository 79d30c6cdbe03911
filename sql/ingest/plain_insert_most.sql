-- Upsert of the plain rows, step 2, when most of them are new or changed: insert every plain row
-- whose customer raw_customers no longer holds (the changed ones were deleted in step 1). The join
-- is built on what is left of raw_customers, the smaller side here (plain_insert_customers.sql
-- otherwise).
insert into raw_customers (customer_id, gender, age, annual_income, spending_score, load_id, updated_at)
select p.customer_id, p.gender, p.age, p.annual_income, p.spending_score, $load_id, $now
from mallscore_ingest_plain as p
anti join raw_customers as r using (customer_id)
