-- One row per ingest (CSV file, database source or synthetic batch).
create table if not exists ingest_loads (
    load_id varchar primary key,
    source varchar not null,
    started_at timestamp not null,
    finished_at timestamp,
    rows_in_file bigint not null,
    loaded bigint not null,
    rejected bigint not null,
    inserted bigint not null,
    updated bigint not null,
    unchanged bigint not null
);
