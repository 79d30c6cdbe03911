-- mallscore segments --limit: the first $limit customers by id, of every segment or of one ($segment).
with segments as (
    select * from segments
),

final as (
    select
        customer_id,
        segment,
        p_high_spender,
        predicted_high_spender,
        basis,
        model_version,
        run_id,
        scored_at,
        customer_updated_at,
        behaviour_group,
        top_reason
    from segments
    where $segment is null or segment = $segment
)

select * from final
order by customer_id
limit $limit
