-- The run succeeded: its counts, in the same transaction as everything it wrote.
update scoring_runs
set
    status = 'succeeded',
    finished_at = $now,
    rows_read = $rows_read,
    rows_scored = $rows_scored,
    rows_rejected = $rows_rejected
where run_id = $run_id
