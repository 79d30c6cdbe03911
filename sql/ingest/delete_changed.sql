-- Upsert, step 1: remove the customers this load changes (an identical row stays untouched).
delete from raw_customers as r
using mallscore_ingest_stage as v
where v.reason is null
  and r.customer_id = v.customer_id
  and (r.gender, r.age, r.annual_income, r.spending_score)
  is distinct from (v.gender, v.age, v.annual_income, v.spending_score)
