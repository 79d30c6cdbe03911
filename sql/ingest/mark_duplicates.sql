-- The duplicate rule comes right after the id rules: it wins over every later rule, but not
-- over a line with the wrong number of fields (problem).
update mallscore_ingest_stage
set reason = 'customer_id ' || customer_id || ' appears on more than one line of this input; keep one line per customer'
where problem is null
  and customer_id in (select customer_id from ingest_duplicate_ids)
