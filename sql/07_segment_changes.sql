-- The segment change feed, one row per customer and run: a customer the run scored for the first
-- time (new), whose segment or predicted label it changed (changed), or whose segment it withdrew
-- because the customer's data now breaks the model's contract (removed; segment NULL). A moved
-- probability alone is not a change. Derived from what each run writes in its own transaction (its
-- assignments, and the rows it archived, marked archived_by_run), so the feed costs no second copy
-- of the run's rows and a rerun that changes nothing adds nothing. Runs older than the
-- archived_by_run column show every customer they scored as new.
create or replace view segment_changes as
with assignments as (
    select * from segment_history
),

replaced as (
    select * from segment_archive where archived_by_run is not null
),

runs as (
    select run_id, started_at from scoring_runs
),

paired as (
    select
        coalesce(assignments.customer_id, replaced.customer_id) as customer_id,
        coalesce(assignments.run_id, replaced.archived_by_run) as run_id,
        replaced.segment as previous_segment,
        assignments.segment as segment,
        replaced.p_high_spender as previous_p_high_spender,
        assignments.p_high_spender as p_high_spender,
        replaced.predicted_high_spender as previous_predicted_high_spender,
        assignments.predicted_high_spender as predicted_high_spender,
        assignments.scored_at as scored_at,
        replaced.customer_id is null as is_new,
        assignments.customer_id is null as is_removed
    from assignments
    full outer join replaced
        on assignments.customer_id = replaced.customer_id and assignments.run_id = replaced.archived_by_run
),

final as (
    select
        paired.customer_id,
        paired.run_id,
        case when is_new then 'new' when is_removed then 'removed' else 'changed' end as change,
        paired.previous_segment,
        paired.segment,
        paired.previous_p_high_spender,
        paired.p_high_spender,
        paired.previous_predicted_high_spender,
        paired.predicted_high_spender,
        coalesce(paired.scored_at, runs.started_at) as scored_at
    from paired
    left join runs using (run_id)
    where is_new
        or is_removed
        or paired.segment <> paired.previous_segment
        or paired.predicted_high_spender <> paired.previous_predicted_high_spender
)

select * from final;
