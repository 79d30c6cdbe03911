-- One row per scoring run; written in the same transaction as the run's segments.
create table if not exists scoring_runs (
    run_id varchar primary key,
    mode varchar not null,
    started_at timestamp not null,
    finished_at timestamp,
    status varchar not null,
    model_version varchar,
    model_sha256 varchar,
    rows_read bigint,
    rows_scored bigint,
    rows_rejected bigint,
    error varchar
);
