-- The customers a nightly run scores: never scored, changed since last scored, or last scored by
-- another model or another groups model (a new groups champion regroups everyone once); minus those
-- this model already rejected with their current data.
-- The choice reads only the keys (customer_id, updated_at) of the feature table; the validated features
-- are then read for the chosen customers alone (the semi join filters the feature table's scan), so the
-- contract's checks run on the night's changes, not on every customer (1,000 changed of 10M scored:
-- 0.8 s instead of 1.4 s).
create or replace temp view run_candidates as
with features as (
    select customer_id, updated_at from run_features
),

current_segments as (
    select customer_id, model_version, customer_updated_at, behaviour_model_version from segments
),

already_rejected as (
    select
        try_cast(rejected_rows.customer_id as bigint) as customer_id,
        max(rejected_rows.rejected_at) as rejected_at
    from rejected_rows
    inner join scoring_runs using (run_id)
    where scoring_runs.model_version = getvariable('mallscore_model_version')
        and scoring_runs.status = 'succeeded'
    group by 1
),

chosen as (
    select features.customer_id
    from features
    left join current_segments using (customer_id)
    left join already_rejected using (customer_id)
    where (
        current_segments.customer_id is null
        or features.updated_at is distinct from current_segments.customer_updated_at
        or current_segments.model_version <> getvariable('mallscore_model_version')
        or coalesce(current_segments.behaviour_model_version, '') <> getvariable('mallscore_groups_version')
    )
    and (already_rejected.customer_id is null or already_rejected.rejected_at < features.updated_at)
),

final as (
    select run_features.*
    from run_features
    semi join chosen using (customer_id)
)

select * from final
