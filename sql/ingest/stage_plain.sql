-- A load that updates customers already loaded keeps its plain rows, parsed by the CSV reader
-- (mallscore/csvsource.py, csv_split), in mallscore_ingest_plain: typed, with their line numbers,
-- a table that lives only inside the load's transaction (dropped before the commit). The ranges
-- are checked again as in insert_plain.sql; plain_changes.sql and the two statements after it
-- upsert them.
create or replace table mallscore_ingest_plain as
select line_no, customer_id, cast(gender as varchar) as gender, age, annual_income, spending_score
from plain_customers
where age between $age_min and $age_max
  and (spending_score is null or spending_score between $score_min and $score_max)
