-- mallscore changes --since: every change made by the runs after $since_run, collapsed to each
-- customer's net change from its state at that run to its latest state: what a tool that last
-- synced at $since_run must apply. previous_* is the assignment the first of those changes replaced,
-- the rest the latest. A customer who came and went (new, then removed), or whose segment, label and
-- behaviour group came back to where they were, has no net change and is left out.
with changes as (
    select * from segment_changes
),

runs as (
    select run_id, started_at from scoring_runs
),

since as (
    select run_id, started_at from scoring_runs where run_id = $since_run
),

later as (
    select
        changes.*,
        runs.started_at as run_started_at
    from changes
    join runs using (run_id)
    cross join since
    where runs.started_at > since.started_at
        or (runs.started_at = since.started_at and runs.run_id > since.run_id)
),

ranked as (
    select
        *,
        row_number() over (partition by customer_id order by run_started_at, run_id) as from_first,
        row_number() over (partition by customer_id order by run_started_at desc, run_id desc) as from_last
    from later
),

firsts as (
    select
        customer_id,
        change as first_change,
        previous_segment,
        previous_p_high_spender,
        previous_predicted_high_spender,
        previous_behaviour_group
    from ranked
    where from_first = 1
),

lasts as (
    select
        customer_id,
        run_id,
        change as last_change,
        segment,
        p_high_spender,
        predicted_high_spender,
        scored_at,
        behaviour_group,
        top_reason
    from ranked
    where from_last = 1
),

collapsed as (
    select
        lasts.customer_id,
        lasts.run_id,
        case
            when firsts.first_change = 'new' and lasts.last_change = 'removed' then null
            when firsts.first_change = 'new' then 'new'
            when lasts.last_change = 'removed' then 'removed'
            else 'changed'
        end as change,
        firsts.previous_segment,
        lasts.segment,
        firsts.previous_p_high_spender,
        lasts.p_high_spender,
        firsts.previous_predicted_high_spender,
        lasts.predicted_high_spender,
        lasts.scored_at,
        firsts.previous_behaviour_group,
        lasts.behaviour_group,
        lasts.top_reason
    from firsts
    join lasts using (customer_id)
),

final as (
    select
        customer_id,
        run_id,
        change,
        previous_segment,
        segment,
        previous_p_high_spender,
        p_high_spender,
        previous_predicted_high_spender,
        predicted_high_spender,
        scored_at,
        previous_behaviour_group,
        behaviour_group,
        top_reason
    from collapsed
    where change in ('new', 'removed')
        or segment is distinct from previous_segment
        or predicted_high_spender is distinct from previous_predicted_high_spender
        or behaviour_group is distinct from previous_behaviour_group
)

select * from final
order by customer_id
