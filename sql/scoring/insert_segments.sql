-- The run's scored customers: the card's tier rule (macro mallscore_segment) and label rule; the
-- behaviour group as assigned in the same pass (NULL without an observed score or a groups model); each
-- predicted customer's top reason (run_reasoned: mallscore/reasons.py, run_scored with top_reason).
insert into segments (
    customer_id, segment, p_high_spender, predicted_high_spender, basis, model_version, run_id, scored_at,
    customer_updated_at, behaviour_group, behaviour_model_version, top_reason
)
with scored as (
    select customer_id, updated_at, observed_score, cast(p as double) as p, behaviour_group, top_reason
    from run_reasoned
)

select
    customer_id,
    mallscore_segment(p, observed_score),
    p,
    p >= $threshold,
    case when observed_score is not null then 'observed' else 'predicted' end,
    $model_version,
    $run_id,
    $scored_at,
    updated_at,
    behaviour_group,
    $groups_version,
    top_reason
from scored
