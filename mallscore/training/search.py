"""The grid search, fast: shared fold preprocessing, warm-started C paths, and a capped search sample.

It searches exactly the grid of :func:`mallscore.training.tuning.param_grid`
(every configuration, the same stratified folds) and chooses with the same
tie rule (:func:`~mallscore.training.tuning.select_one_se` on a
``cv_results_`` of the same shape as GridSearchCV's). What changes is how the
numbers are computed:

* each preprocessing choice is fitted once per fold and its output reused by
  every classifier of that fold (GridSearchCV refits it for each of the
  ~100 configurations that share it);
* for each fold, preprocessing, penalty and class_weight, the C values are
  fitted in ascending order on one warm-started LogisticRegression (a
  regularisation path: each fit starts from the previous optimum, so saga's
  elastic nets converge in a few epochs instead of hundreds; liblinear ignores
  the warm start). The optimum is the same; only the iterations to reach it
  shrink;
* a training set larger than ``budget.search_rows`` is searched on a
  stratified sample of that many rows (fixed seed). The chosen configuration
  is then refitted on every row given to :meth:`PathSearch.fit`, so the
  search only decides *which* configuration, and nested CV (which runs this
  whole procedure inside each outer fold and scores the fold left out) still
  judges the procedure as it is used. The card records the sample size.

scikit-learn is imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mallscore.specs import ModelSpec
from mallscore.training.budget import Budget

SEARCH_SAMPLE_RULE = (
    "the grid search (and each nested-CV inner search) runs on a stratified sample of at most "
    "search_rows rows of its training data (fixed seed); the chosen configuration is refitted on all of them"
)


def search_sample(y: np.ndarray, rows: int | None, seed: int) -> np.ndarray:
    """Sorted row indices of a stratified sample of ``rows`` rows of ``y`` (all rows when there are not more)."""
    n = int(np.asarray(y).size)
    if rows is None or n <= rows:
        return np.arange(n)
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(n), train_size=rows, stratify=y, random_state=seed)
    return np.sort(keep)


def _group_key(params: dict) -> tuple:
    return (params["clf__solver"], float(params["clf__l1_ratio"]), str(params["clf__class_weight"]))


class PathSearch:
    """A GridSearchCV stand-in over the tuning grid (``cv_results_``, ``best_index_``, ``best_estimator_``)."""

    def __init__(self, spec: ModelSpec, budget: Budget) -> None:
        self.spec = spec
        self.budget = budget

    def fit(self, X: np.ndarray, y: np.ndarray) -> PathSearch:
        """Search the grid on a sample of ``X, y``, choose by the tie rule, refit the choice on all rows."""
        from sklearn.model_selection import ParameterGrid, StratifiedKFold

        from mallscore.training import tuning

        budget = self.budget
        grid = list(ParameterGrid(tuning.param_grid(self.spec, budget)))
        keep = search_sample(y, budget.search_rows, budget.seed)
        Xs, ys = X[keep], y[keep]
        folds = list(StratifiedKFold(budget.cv_splits, shuffle=True, random_state=budget.seed).split(Xs, ys))
        loss = np.full((len(grid), len(folds)), np.nan)
        auc = np.full((len(grid), len(folds)), np.nan)
        paths: dict[tuple, dict[tuple, list[int]]] = {}
        for i, params in enumerate(grid):
            by_prep = paths.setdefault((tuning.prep_name(params["prep"]),), {})
            by_prep.setdefault(_group_key(params), []).append(i)
        for k, (train, test) in enumerate(folds):
            for (choice,), groups in paths.items():
                prep = tuning.make_preprocessor(self.spec, choice).fit(Xs[train], ys[train])
                z_train, z_test = prep.transform(Xs[train]), prep.transform(Xs[test])
                for members in groups.values():
                    clf = tuning.make_classifier(budget)
                    first = grid[members[0]]
                    clf.set_params(
                        solver=first["clf__solver"],
                        l1_ratio=first["clf__l1_ratio"],
                        class_weight=first["clf__class_weight"],
                        warm_start=True,
                    )
                    for i in sorted(members, key=lambda j: grid[j]["clf__C"]):
                        clf.set_params(C=grid[i]["clf__C"])
                        clf.fit(z_train, ys[train])
                        got = _scores(ys[test], clf.predict_proba(z_test)[:, 1])
                        loss[i, k], auc[i, k] = got["neg_log_loss"], got["roc_auc"]
        self.cv_results_ = _cv_results(grid, loss, auc)
        self.best_index_ = tuning.select_one_se(self.cv_results_)
        self.best_params_ = grid[self.best_index_]
        self.search_rows_ = int(keep.size)
        chosen = tuning.readable_params(self.best_params_)
        self.best_estimator_ = tuning.make_pipeline(self.spec, budget, chosen).fit(X, y)
        return self

    def predict_proba(self, X: np.ndarray) -> Any:
        """Probabilities of the chosen configuration refitted on all rows."""
        return self.best_estimator_.predict_proba(X)


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from mallscore.training.leakage import roc_auc

    q = np.clip(p, 1e-15, 1 - 1e-15)
    loss = -float(np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
    return {"roc_auc": roc_auc(y, p), "neg_log_loss": -loss}


def _cv_results(grid: list[dict], loss: np.ndarray, auc: np.ndarray) -> dict:
    """The parts of GridSearchCV's ``cv_results_`` the tie rule and the card read."""
    out: dict[str, Any] = {"params": grid}
    for name, values in (("neg_log_loss", loss), ("roc_auc", auc)):
        out[f"mean_test_{name}"] = values.mean(axis=1)
        out[f"std_test_{name}"] = values.std(axis=1)
        for k in range(values.shape[1]):
            out[f"split{k}_test_{name}"] = values[:, k]
    return out
