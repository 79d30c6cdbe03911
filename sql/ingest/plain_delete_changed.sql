-- Upsert of the plain rows, step 1: remove the customers they change (an identical row stays
-- untouched), one range of customer ids at a time ($lo..$hi, from plain_id_cuts.sql), as
-- delete_changed.sql does for the stage.
delete from raw_customers
where customer_id between $lo and $hi
  and customer_id in (
      select p.customer_id
      from mallscore_ingest_plain as p
      inner join raw_customers as r using (customer_id)
      where p.customer_id between $lo and $hi
        and (r.gender, r.age, r.annual_income, r.spending_score)
        is distinct from (p.gender, p.age, p.annual_income, p.spending_score)
  )
