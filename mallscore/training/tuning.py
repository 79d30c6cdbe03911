"""Tuning: preprocessing + logistic regression searched by GridSearchCV, with a documented tie-break.

On a few hundred rows many configurations score within noise of each other, so
"the best score" picks an accident of grid order. The search therefore ends
with :func:`select_one_se`:

1. Score every configuration by mean cross-validated log loss (a proper scoring
   rule: ROC-AUC alone ignores the probability scale, and heavily regularised
   models tie on AUC while squashing every probability towards the base rate,
   which would break tiers and odds ratios). ROC-AUC is recorded beside it.
2. Keep the configurations within one standard error of the best
   (SE = std of the fold scores / sqrt(folds)).
3. Among those, take the simplest: fewest preprocessing outputs (scaling before
   quantile bins, fewer bins first), then the smallest C (strongest
   regularisation), then l1_ratio ascending, class_weight None before
   "balanced", solver name. The order is a total order on parameter values,
   so the choice never depends on the order of the grid.

scikit-learn is imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from mallscore.specs import ModelSpec
from mallscore.training.budget import Budget
from mallscore.training.leakage import roc_auc

SELECTION_RULE = (
    "lowest mean CV log loss defines the best; among configurations within one standard error "
    "of it, take the simplest: scaling before quantile bins (fewer bins first), then smallest C, "
    "then l1_ratio ascending, class_weight None before balanced, then solver name"
)
MAX_ITER = 10_000


def c_values(budget: Budget) -> list[float]:
    """The C values of the grid: logspace(-3, 3, n)."""
    return [float(c) for c in np.logspace(-3, 3, budget.n_c_values)]


def prep_choices(spec: ModelSpec) -> list[str]:
    """Names of the preprocessing choices the grid searches over (``scale``, ``bins5``...)."""
    names = []
    for kind in spec.preprocessing:
        if kind == "scale":
            names.append("scale")
        elif kind == "bins":
            names.extend(f"bins{n}" for n in spec.bins)
        else:
            raise ValueError(f"spec {spec.name!r}: unknown preprocessing {kind!r}")
    return names


def make_preprocessor(spec: ModelSpec, choice: str):
    """A ColumnTransformer over the feature columns (by position) for one preprocessing choice."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import KBinsDiscretizer, StandardScaler

    if choice == "scale":
        return StandardScaler()
    if choice.startswith("bins"):
        n_bins = int(choice[4:])
        cont = [i for i, f in enumerate(spec.features) if f.kind == "continuous"]
        binary = [i for i, f in enumerate(spec.features) if f.kind != "continuous"]
        parts: list[tuple[str, Any, list[int]]] = [
            (choice, KBinsDiscretizer(n_bins=n_bins, encode="onehot-dense", strategy="quantile",
                                      quantile_method="averaged_inverted_cdf"), cont)
        ]
        if binary:
            parts.append(("passthrough", "passthrough", binary))
        return ColumnTransformer(parts)
    raise ValueError(f"unknown preprocessing choice {choice!r}")


def prep_name(preprocessor) -> str:
    """The choice name a preprocessor was built for (``scale``, or its first transformer's name)."""
    if hasattr(preprocessor, "transformers"):
        return preprocessor.transformers[0][0]
    return "scale"


def make_classifier(budget: Budget):
    """The logistic regression every pipeline ends with."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=MAX_ITER, random_state=budget.seed)


def make_pipeline(spec: ModelSpec, budget: Budget, params: dict | None = None):
    """A fresh Pipeline(prep, clf), optionally set to readable ``params`` (see :func:`readable_params`)."""
    from sklearn.pipeline import Pipeline

    params = params or {}
    pipe = Pipeline([("prep", make_preprocessor(spec, params.get("preprocessing", "scale"))),
                     ("clf", make_classifier(budget))])
    clf = {k: v for k, v in params.items() if k != "preprocessing"}
    if clf:
        pipe.set_params(**{f"clf__{k}": v for k, v in clf.items()})
    return pipe


def param_grid(spec: ModelSpec, budget: Budget) -> list[dict]:
    """The GridSearchCV grid: preprocessing x (solver, l1_ratio) x C x class_weight."""
    grid = []
    for choice in prep_choices(spec):
        prep = make_preprocessor(spec, choice)
        for solver, l1_ratio in spec.penalties:
            grid.append({
                "prep": [prep],
                "clf__solver": [solver],
                "clf__l1_ratio": [l1_ratio],
                "clf__C": c_values(budget),
                "clf__class_weight": [None, "balanced"],
            })
    return grid


def count_configs(spec: ModelSpec, budget: Budget) -> int:
    """How many configurations the grid holds (nothing is fitted)."""
    from sklearn.model_selection import ParameterGrid

    return len(ParameterGrid(param_grid(spec, budget)))


def readable_params(params: dict) -> dict:
    """GridSearchCV params as plain JSON values: preprocessing, C, l1_ratio, solver, class_weight."""
    return {
        "preprocessing": prep_name(params["prep"]),
        "C": float(params["clf__C"]),
        "l1_ratio": float(params["clf__l1_ratio"]),
        "solver": str(params["clf__solver"]),
        "class_weight": params["clf__class_weight"],
    }


def _complexity(choice: str) -> tuple[int, int]:
    return (0, 0) if choice == "scale" else (1, int(choice[4:]))


def simplicity_key(params: dict) -> tuple:
    """Sort key of the tie-break: simplest, most regularised first (see module docstring)."""
    p = readable_params(params)
    return (_complexity(p["preprocessing"]), p["C"], p["l1_ratio"], p["class_weight"] is not None,
            str(p["class_weight"]), p["solver"])


def eligible_within_one_se(cv_results: dict, metric: str = "neg_log_loss") -> np.ndarray:
    """Indices of configurations whose mean score is within one standard error of the best."""
    mean = np.asarray(cv_results[f"mean_test_{metric}"], dtype=float)
    std = np.asarray(cv_results[f"std_test_{metric}"], dtype=float)
    n_splits = sum(1 for k in cv_results if k.startswith("split") and k.endswith(f"_test_{metric}"))
    mean = np.where(np.isfinite(mean), mean, -np.inf)
    best = int(np.argmax(mean))
    se = float(std[best]) / math.sqrt(max(n_splits, 1))
    return np.flatnonzero(mean >= mean[best] - se - 1e-12)


def select_one_se(cv_results: dict) -> int:
    """GridSearchCV ``refit`` rule: the simplest configuration within one SE of the best log loss."""
    eligible = eligible_within_one_se(cv_results)
    params = cv_results["params"]
    return int(min(eligible, key=lambda i: simplicity_key(params[i])))


def fast_scorer(estimator, X, y) -> dict[str, float]:
    """ROC-AUC and negative log loss from one predict_proba call (numpy, no sklearn overhead)."""
    p = estimator.predict_proba(X)[:, 1]
    q = np.clip(p, 1e-15, 1 - 1e-15)
    y = np.asarray(y)
    loss = -float(np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
    return {"roc_auc": roc_auc(y, p), "neg_log_loss": -loss}


def make_search(spec: ModelSpec, budget: Budget, n_jobs: int | None = None):
    """The GridSearchCV (stratified k-fold, fixed seed, refit by :func:`select_one_se`)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    return GridSearchCV(
        make_pipeline(spec, budget),
        param_grid(spec, budget),
        scoring=fast_scorer,
        refit=select_one_se,
        cv=StratifiedKFold(budget.cv_splits, shuffle=True, random_state=budget.seed),
        n_jobs=budget.n_jobs if n_jobs is None else n_jobs,
        error_score="raise",
    )


@dataclass
class TuningResult:
    """The fitted search and what it chose."""

    search: Any
    best_index: int
    best_params: dict
    n_configs: int
    n_eligible: int
    cv_log_loss: float
    cv_roc_auc: float

    def as_card(self) -> dict:
        """The ``tuning`` block of the card."""
        return {
            "rule": SELECTION_RULE,
            "n_configs": self.n_configs,
            "n_within_one_se": self.n_eligible,
            "selected_cv_log_loss": self.cv_log_loss,
            "selected_cv_roc_auc": self.cv_roc_auc,
        }


def tune(X: np.ndarray, y: np.ndarray, spec: ModelSpec, budget: Budget, n_jobs: int | None = None) -> TuningResult:
    """Run the grid search on ``X, y`` and return the configuration the tie-break rule picked."""
    search = make_search(spec, budget, n_jobs=n_jobs).fit(X, y)
    res = search.cv_results_
    idx = int(search.best_index_)
    return TuningResult(
        search=search,
        best_index=idx,
        best_params=readable_params(res["params"][idx]),
        n_configs=len(res["params"]),
        n_eligible=int(eligible_within_one_se(res).size),
        cv_log_loss=float(-res["mean_test_neg_log_loss"][idx]),
        cv_roc_auc=float(res["mean_test_roc_auc"][idx]),
    )


def _outer_fold(spec: ModelSpec, budget: Budget, X, y, train_idx, test_idx) -> dict:
    search = make_search(spec, budget, n_jobs=1).fit(X[train_idx], y[train_idx])
    p = search.predict_proba(X[test_idx])[:, 1]
    return {"roc_auc": roc_auc(y[test_idx], p), "params": readable_params(search.cv_results_["params"][search.best_index_])}


def nested_cv_auc(X: np.ndarray, y: np.ndarray, spec: ModelSpec, budget: Budget,
                  on_fold: Callable[[], None] | None = None) -> dict:
    """Nested CV: the whole search (grid + tie-break) re-run inside each outer fold; ROC-AUC mean/std."""
    from joblib import Parallel, delayed
    from sklearn.model_selection import StratifiedKFold

    outer = StratifiedKFold(budget.nested_outer, shuffle=True, random_state=budget.seed + 1)
    jobs = (delayed(_outer_fold)(spec, budget, X, y, tr, te) for tr, te in outer.split(X, y))
    folds = []
    for result in Parallel(n_jobs=budget.n_jobs, return_as="generator_unordered")(jobs):
        folds.append(result)
        if on_fold:
            on_fold()
    scores = sorted(f["roc_auc"] for f in folds)
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
            "folds": scores, "outer_folds": len(scores)}
