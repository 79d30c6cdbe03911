-- mallscore segments: the current segment of every customer, or of one segment ($segment). In the
-- table's own order: sorting 10 million rows would double the cost of an export (bench/bench_export.py).
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
