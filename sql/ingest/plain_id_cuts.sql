-- Approximate quantiles ($shares) of the customer ids of this load's plain rows: the cuts between
-- the ranges plain_delete_changed.sql works through, each with about as many rows.
select approx_quantile(customer_id, cast($shares as float[])) as cuts
from mallscore_ingest_plain
