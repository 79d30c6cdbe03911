-- mallscore rejected: quarantined rows with their reason, of one load ($load_id), one run ($run_id), or all.
with rejected as (
    select * from rejected_rows
),

final as (
    select
        load_id,
        run_id,
        line_no,
        customer_id,
        raw_values,
        reason,
        rejected_at
    from rejected
    where ($load_id is null or load_id = $load_id)
        and ($run_id is null or run_id = $run_id)
)

select * from final
order by rejected_at, load_id, run_id, line_no, customer_id
