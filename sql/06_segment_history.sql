-- Every run's assignments, for audit: superseded ones and current ones.
-- One row per (run_id, customer_id).
create or replace view segment_history as
with archived as (
    select * from segment_archive
),

current_segments as (
    select * from segments
),

final as (
    select run_id, customer_id, segment, p_high_spender, predicted_high_spender, basis, model_version, scored_at,
           customer_updated_at, behaviour_group, behaviour_model_version,
           top_reason
    from archived
    union all
    select run_id, customer_id, segment, p_high_spender, predicted_high_spender, basis, model_version, scored_at,
           customer_updated_at, behaviour_group, behaviour_model_version,
           top_reason
    from current_segments
)

select * from final;
