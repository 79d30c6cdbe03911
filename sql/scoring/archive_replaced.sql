-- Move the current segments of this run's candidates to the archive, noting the run that replaced them.
insert into segment_archive
select segments.*, $run_id as archived_by_run
from segments
semi join run_candidates using (customer_id)
