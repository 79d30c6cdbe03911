"""Scoring customers with a registered model: the nightly run, ad-hoc rescoring, and reading runs.

* :mod:`~mallscore.scoring.model`: load and verify a model (onnxruntime or compiled SQL);
* :mod:`~mallscore.scoring.relations`: the run's relations, rendered from the model card;
* :mod:`~mallscore.scoring.stream`: the onnxruntime streaming pass;
* :mod:`~mallscore.scoring.run`: the run, its transaction and bookkeeping (``sql/scoring/``);
* :mod:`~mallscore.scoring.rescore`: a few customers now;
* :mod:`~mallscore.scoring.runs`: recent runs and the segment summary.
"""

from mallscore.scoring.model import ENGINES, LoadedModel, load_model, predict
from mallscore.scoring.rescore import rescore_customers
from mallscore.scoring.run import JOB_SETTINGS, new_run_id, open_job_connection, score_customers
from mallscore.scoring.runs import recent_runs, segment_summary
from mallscore.scoring.stream import BATCH_ROWS

__all__ = [
    "BATCH_ROWS",
    "ENGINES",
    "JOB_SETTINGS",
    "LoadedModel",
    "load_model",
    "new_run_id",
    "open_job_connection",
    "predict",
    "recent_runs",
    "rescore_customers",
    "score_customers",
    "segment_summary",
]
