-- One row per scoring run; written in the same transaction as the run's segments.
-- engine: onnx (onnxruntime) or sql (the model compiled to sql, scored in duckdb);
-- null for runs logged before the column existed (the alter adds it to such warehouses).
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
    error varchar,
    engine varchar
);

alter table scoring_runs add column if not exists engine varchar;
