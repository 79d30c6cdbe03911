-- The run failed or was stopped: rolled back, with why (after the rollback, so it is kept).
update scoring_runs
set status = $status, finished_at = $now, error = $error
where run_id = $run_id
