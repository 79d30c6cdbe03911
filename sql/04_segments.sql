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

-- behaviour_group: the customer's behaviour group (the groups champion's name for the nearest centre
-- of annual income x spending score), NULL when the score is not observed or there is no groups model;
-- behaviour_model_version: the groups model of the run that wrote the row ('' or NULL: none).
-- segment, basis, model_version and the three columns below are created as varchar; the first run that
-- writes a label in one makes it an ENUM of its labels, here and in segment_archive (mallscore/labels.py:
-- a one-byte code per row, read as text).
alter table segments add column if not exists behaviour_group varchar;

alter table segments add column if not exists behaviour_model_version varchar;

alter table segments add column if not exists top_reason varchar;
