-- The current segment of every scored customer (one row per customer).
-- unique_key: customer_id
-- top_reason: the feature that moves the prediction furthest from the average customer's, in words
-- (mallscore/reasons.py); null where basis is 'observed' or the model's card has no reference.
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

alter table segments add column if not exists top_reason varchar;
