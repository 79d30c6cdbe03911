-- Upsert of the plain rows, step 1: remove the customers they change (an identical row stays
-- untouched), as delete_changed.sql does for the stage.
delete from raw_customers as r
using mallscore_ingest_plain as p
where r.customer_id = p.customer_id
  and (r.gender, r.age, r.annual_income, r.spending_score)
  is distinct from (p.gender, p.age, p.annual_income, p.spending_score)
