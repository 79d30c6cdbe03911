-- Rows quarantined by an ingest (load_id) or a scoring run (run_id), with a reason.
create table if not exists rejected_rows (
    load_id varchar,
    run_id varchar,
    line_no bigint,
    customer_id varchar,
    raw_values varchar,
    reason varchar not null,
    rejected_at timestamp not null
);
