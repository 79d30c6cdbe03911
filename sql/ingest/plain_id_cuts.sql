-- Approximate quantiles ($shares) of the ids of the customers this load's plain rows change:
-- the cuts between the ranges plain_delete_changed.sql works through, each with about as many rows.
select approx_quantile(customer_id, cast($shares as float[])) as cuts
from ingest_plain_upserts
where not is_new
