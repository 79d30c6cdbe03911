-- The customers named on the command line (`rescore`, `score` of given ids).
create or replace temp view run_candidates as
select * from run_features
where list_contains(getvariable('mallscore_ids'), customer_id)
