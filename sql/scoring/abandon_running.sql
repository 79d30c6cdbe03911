-- A run still marked running when a new one starts was killed: nothing it wrote was committed.
update scoring_runs
set
    status = 'abandoned',
    finished_at = $now,
    error = 'the process ended before the run finished (killed?); nothing it wrote was kept'
where status = 'running'
