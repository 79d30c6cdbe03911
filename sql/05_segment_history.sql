-- Every run's assignments, for audit (append-only).
create table if not exists segment_history (
    run_id varchar not null,
    customer_id bigint not null,
    segment varchar not null,
    p_high_spender double not null,
    predicted_high_spender boolean not null,
    basis varchar not null,
    model_version varchar not null,
    scored_at timestamp not null
);
