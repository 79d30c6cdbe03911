-- The run's quarantined candidates, with the raw values and the first broken rule.
insert into rejected_rows (load_id, run_id, line_no, customer_id, raw_values, reason, rejected_at)
select null, $run_id, null, cast(customer_id as varchar), raw_values, reason, $scored_at
from run_rejected
