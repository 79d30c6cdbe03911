-- The current segment of every scored customer (one row per customer).
-- unique_key: customer_id
create table if not exists segments (
    customer_id bigint not null,
    segment varchar not null,
    p_high_spender double not null,
    predicted_high_spender boolean not null,
    basis varchar not null,
    model_version varchar not null,
    run_id varchar not null,
    scored_at timestamp not null,
    customer_updated_at timestamp not null
);
