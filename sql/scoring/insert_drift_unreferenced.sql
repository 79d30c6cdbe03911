-- A model whose card has no reference distributions (trained before they existed): the run still
-- scores, and says so for every feature and the probability.
insert into scoring_drift (run_id, feature, psi, status, rows)
select $run_id, unnest($features), null, 'no reference', $rows
