-- mallscore changes --run: the change feed of one run.
with changes as (
    select * from segment_changes
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
    from changes
    where run_id = $run_id
)

select * from final
order by customer_id
