-- Move the current segments of this run's candidates to the archive, noting the run that replaced them.
-- One range of customer ids at a time ($lo..$hi, both sides filtered): the job splits a large segments
-- table into ranges so the join fits its memory cap (mallscore/scoring/run.py, replace_ranges).
insert into segment_archive (
    customer_id, segment, p_high_spender, predicted_high_spender, basis, model_version, run_id, scored_at,
    customer_updated_at, archived_by_run, behaviour_group, behaviour_model_version, top_reason
)
select
    segments.customer_id, segments.segment, segments.p_high_spender, segments.predicted_high_spender,
    segments.basis, segments.model_version, segments.run_id, segments.scored_at, segments.customer_updated_at,
    $run_id as archived_by_run, segments.behaviour_group, segments.behaviour_model_version, segments.top_reason
from segments
semi join (
    select customer_id from run_candidates where customer_id between $lo and $hi
) as candidates using (customer_id)
where segments.customer_id between $lo and $hi
