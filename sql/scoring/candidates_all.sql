-- Every customer of the feature table: `score --all`, and a nightly run before anything was
-- scored or rejected (no join: even an empty join side made the streamed query's memory grow).
create or replace temp view run_candidates as
select * from run_features
