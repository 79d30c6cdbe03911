-- Approximate quantiles ($shares) of the customer ids of the stage's valid rows: the cuts between
-- the ranges delete_changed.sql works through, each with about as many rows.
select approx_quantile(customer_id, cast($shares as float[])) as cuts
from mallscore_ingest_stage
where reason is null
