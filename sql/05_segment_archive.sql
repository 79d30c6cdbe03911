-- Segment assignments that a later run replaced (append-only). Every assignment
-- is stored once: here once superseded, in `segments` while current; the view
-- `segment_history` shows both. A run therefore never writes a second copy of
-- the rows it scores. archived_by_run names the run that replaced the row (NULL for rows
-- archived before the column existed; the alter adds it to such warehouses).
create table if not exists segment_archive (
    customer_id bigint not null,
    segment varchar not null,
    p_high_spender double not null,
    predicted_high_spender boolean not null,
    basis varchar not null,
    model_version varchar not null,
    run_id varchar not null,
    scored_at timestamp not null,
    customer_updated_at timestamp not null,
    archived_by_run varchar
);

alter table segment_archive add column if not exists archived_by_run varchar;

alter table segment_archive add column if not exists behaviour_group varchar;

alter table segment_archive add column if not exists behaviour_model_version varchar;

-- top_reason: as in segments (added after the behaviour columns).
alter table segment_archive add column if not exists top_reason varchar;
