-- Ids of this load's plain rows (mallscore_ingest_plain) that are also given on a line of the
-- stage: as plain_clashes.sql, for a load that upserts its plain rows.
select count(*) as clashes
from mallscore_ingest_stage as s
semi join mallscore_ingest_plain as p using (customer_id)
