-- A load of new customers writes its plain rows once, straight from the CSV reader
-- (mallscore/csvsource.py, csv_split): it passes on only rows that validate_customers.sql would
-- accept as they are (plain fields, age and score inside the ranges). The ranges are checked
-- again here with the same bounds, and the loader compares the count written with the count
-- read: a difference, an id given twice or a customer already loaded (plain_updates.sql) sends
-- the whole load through the stage instead.
insert into raw_customers (customer_id, gender, age, annual_income, spending_score, load_id, updated_at)
select customer_id, gender, age, annual_income, spending_score, $load_id, $now
from plain_customers
where age between $age_min and $age_max
  and (spending_score is null or spending_score between $score_min and $score_max)
