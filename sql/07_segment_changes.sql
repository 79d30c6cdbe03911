-- The segment change feed, one row per customer and run: a customer the run scored for the first
-- time (new), whose segment or predicted label it changed (changed), or whose segment it withdrew
-- because the customer's data now breaks the model's contract (removed; segment NULL). A moved
-- probability alone is not a change; a moved behaviour group is (previous_behaviour_group, behaviour_group). Derived from what each run writes in its own transaction (its
-- assignments, and the rows it archived, marked archived_by_run), so the feed costs no second copy
-- of the run's rows and a rerun that changes nothing adds nothing. Runs older than the
-- archived_by_run column show every customer they scored as new.
-- Two halves joined on (customer, run) rather than one full outer join, so that a filter on run_id
-- (one run's feed) reaches both tables' scans instead of pairing the whole history first; the CTEs are
-- NOT MATERIALIZED because DuckDB would otherwise materialize the whole history once for the two halves
-- before any filter (measured: one run's feed from a 1M-customer warehouse in half the time).
-- not_counted: its row count joins the whole history (10M customers rescored three times: 11 s and 7 GiB);
-- status and features show it without one. Read it a run at a time (where run_id = ...).
create or replace view segment_changes as
with assignments as not materialized (
    select * from segment_history
),

replaced as not materialized (
    select * from segment_archive where archived_by_run is not null
),

runs as not materialized (
    select run_id, started_at from scoring_runs
),

scored as (
    select
        assignments.customer_id,
        assignments.run_id,
        case when replaced.customer_id is null then 'new' else 'changed' end as change,
        replaced.segment as previous_segment,
        assignments.segment,
        replaced.p_high_spender as previous_p_high_spender,
        assignments.p_high_spender,
        replaced.predicted_high_spender as previous_predicted_high_spender,
        assignments.predicted_high_spender,
        assignments.scored_at,
        replaced.behaviour_group as previous_behaviour_group,
        assignments.behaviour_group,
        assignments.top_reason
    from assignments
    left join replaced
        on assignments.customer_id = replaced.customer_id and assignments.run_id = replaced.archived_by_run
    where replaced.customer_id is null
        or assignments.segment <> replaced.segment
        or assignments.predicted_high_spender <> replaced.predicted_high_spender
        or assignments.behaviour_group is distinct from replaced.behaviour_group
),

withdrawn as (
    select
        replaced.customer_id,
        replaced.archived_by_run as run_id,
        'removed' as change,
        replaced.segment as previous_segment,
        cast(null as varchar) as segment,
        replaced.p_high_spender as previous_p_high_spender,
        cast(null as double) as p_high_spender,
        replaced.predicted_high_spender as previous_predicted_high_spender,
        cast(null as boolean) as predicted_high_spender,
        runs.started_at as scored_at,
        replaced.behaviour_group as previous_behaviour_group,
        cast(null as varchar) as behaviour_group,
        cast(null as varchar) as top_reason
    from replaced
    left join runs on runs.run_id = replaced.archived_by_run
    where not exists (
        select 1 from assignments
        where assignments.customer_id = replaced.customer_id and assignments.run_id = replaced.archived_by_run
    )
),

final as (
    select * from scored
    union all
    select * from withdrawn
)

select * from final;
