-- The run's row, committed before any work so that a killed run is visible.
insert into scoring_runs (run_id, mode, started_at, status, model_version, model_sha256, engine)
values ($run_id, $mode, $started_at, 'running', $model_version, $model_sha256, $engine)
