-- Upsert, step 1: remove the customers this load changes (an identical row stays untouched).
-- One range of customer ids at a time ($lo..$hi, from stage_id_cuts.sql): a delete joined with
-- millions of changed customers at once ran out of DuckDB's memory (mallscore/ingest.py, _delete_changed).
delete from raw_customers
where customer_id between $lo and $hi
  and customer_id in (
      select v.customer_id
      from mallscore_ingest_stage as v
      inner join raw_customers as r using (customer_id)
      where v.reason is null
        and v.customer_id between $lo and $hi
        and (r.gender, r.age, r.annual_income, r.spending_score)
        is distinct from (v.gender, v.age, v.annual_income, v.spending_score)
  )
