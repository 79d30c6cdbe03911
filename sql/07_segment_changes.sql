-- The segment change feed: one row per customer a run scored for the first time (new), whose
-- segment or predicted label it changed (changed), or whose segment it withdrew because the
-- customer's data now breaks the model's contract (removed; segment NULL). Written in the run's
-- transaction (sql/scoring/record_changes.sql); a rerun that changes nothing adds nothing.
create table if not exists segment_changes (
    customer_id bigint not null,
    run_id varchar not null,
    change varchar not null,
    previous_segment varchar,
    segment varchar,
    previous_p_high_spender double,
    p_high_spender double,
    previous_predicted_high_spender boolean,
    predicted_high_spender boolean,
    scored_at timestamp not null
);
