-- `score --all` rebuilds segments from the feature table: every current segment moves to the archive,
-- noting the run that replaced it, in one statement without a join (a customer the run does not score
-- again, one no longer in the feature table, has its segment withdrawn: a `removed` row in
-- segment_changes). delete_all_replaced.sql then empties segments in the same transaction.
insert into segment_archive (
    customer_id, segment, p_high_spender, predicted_high_spender, basis, model_version, run_id, scored_at,
    customer_updated_at, archived_by_run, behaviour_group, behaviour_model_version, top_reason
)
select
    customer_id, segment, p_high_spender, predicted_high_spender, basis, model_version, run_id, scored_at,
    customer_updated_at, $run_id as archived_by_run, behaviour_group, behaviour_model_version, top_reason
from segments
