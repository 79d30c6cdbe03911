-- Move the older segments of the customers this run wrote to the archive, noting the run that replaced them.
-- Runs after the run's own rows are in: the customers it wrote are its rows of segments and rejected_rows
-- (a small table on a night with few changes, however large segments is; the candidates view, which
-- joins every customer with segments, is read once, by the scoring pass). One range of customer ids at a
-- time ($lo..$hi): the job splits a run that replaces many customers into ranges so the join fits its memory
-- cap (mallscore/scoring/run.py, replace_ranges).
insert into segment_archive (
    customer_id, segment, p_high_spender, predicted_high_spender, basis, model_version, run_id, scored_at,
    customer_updated_at, archived_by_run, behaviour_group, behaviour_model_version, top_reason
)
with run_customers as (
    select customer_id from segments
    where run_id = $run_id and customer_id between $lo and $hi
    union all
    select try_cast(customer_id as bigint) as customer_id from rejected_rows
    where run_id = $run_id and try_cast(customer_id as bigint) between $lo and $hi
)

select
    segments.customer_id, segments.segment, segments.p_high_spender, segments.predicted_high_spender,
    segments.basis, segments.model_version, segments.run_id, segments.scored_at, segments.customer_updated_at,
    $run_id as archived_by_run, segments.behaviour_group, segments.behaviour_model_version, segments.top_reason
from segments
semi join run_customers using (customer_id)
where segments.run_id <> $run_id and segments.customer_id between $lo and $hi
