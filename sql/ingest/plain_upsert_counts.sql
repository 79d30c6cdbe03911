-- How many of this load's plain rows are new customers and how many change one (the rest change
-- nothing), from ingest_plain_upserts (plain_changes.sql).
select
    count(*) filter (where is_new) as inserted,
    count(*) filter (where not is_new) as updated
from ingest_plain_upserts
