-- Drift of every scoring run against the model's training population (mallscore/monitoring.py):
-- one row per run and feature, the model's probability as feature p_high_spender. psi is the
-- population stability index of the run's scored rows against the card's reference bins (null when
-- status is 'too few rows' or 'no reference'); status ok / warn / alert at MALLSCORE_DRIFT_WARN and
-- MALLSCORE_DRIFT_ALERT. Written in the run's own transaction.
create table if not exists scoring_drift (
    run_id varchar not null,
    feature varchar not null,
    psi double,
    status varchar not null,
    rows bigint not null
);
