"""Model training: leakage guard, tuning, evaluation with spread, ONNX export, report.

Importing this package is cheap; scikit-learn, skl2onnx and matplotlib are
imported inside the functions that need them.
"""

from mallscore.training.budget import FULL, QUICK, Budget, get_budget
from mallscore.training.job import read_training_set, train_frame

__all__ = ["Budget", "FULL", "QUICK", "get_budget", "read_training_set", "train_frame"]
