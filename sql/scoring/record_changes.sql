-- The change feed: customers this run scored for the first time (new), whose segment or label moved
-- (changed), or whose current segment it replaced with none because their data now breaks the
-- contract (removed). A moved probability alone is not a change.
insert into segment_changes
with scored_now as (
    select * from segments where run_id = $run_id
),

replaced as (
    select * from segment_archive where archived_by_run = $run_id
),

final as (
    select
        coalesce(scored_now.customer_id, replaced.customer_id) as customer_id,
        $run_id as run_id,
        case
            when replaced.customer_id is null then 'new'
            when scored_now.customer_id is null then 'removed'
            else 'changed'
        end as change,
        replaced.segment as previous_segment,
        scored_now.segment as segment,
        replaced.p_high_spender as previous_p_high_spender,
        scored_now.p_high_spender as p_high_spender,
        replaced.predicted_high_spender as previous_predicted_high_spender,
        scored_now.predicted_high_spender as predicted_high_spender,
        $scored_at as scored_at
    from scored_now
    full outer join replaced using (customer_id)
    where replaced.customer_id is null
        or scored_now.customer_id is null
        or scored_now.segment <> replaced.segment
        or scored_now.predicted_high_spender <> replaced.predicted_high_spender
)

select * from final
