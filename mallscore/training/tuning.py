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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mallscore.specs import ModelSpec
from mallscore.training.budget import Budget
from mallscore.training.leakage import roc_auc
from mallscore.training.search import SEARCH_SAMPLE_RULE

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
            (
                choice,
                KBinsDiscretizer(
                    n_bins=n_bins, encode="onehot-dense", strategy="quantile", quantile_method="averaged_inverted_cdf"
                ),
                cont,
            )
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
    pipe = Pipeline(
        [("prep", make_preprocessor(spec, params.get("preprocessing", "scale"))), ("clf", make_classifier(budget))]
    )
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
            grid.append(
                {
                    "prep": [prep],
                    "clf__solver": [solver],
                    "clf__l1_ratio": [l1_ratio],
                    "clf__C": c_values(budget),
                    "clf__class_weight": [None, "balanced"],
                }
            )
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


def model_parameters(pipeline, spec: ModelSpec) -> dict:
    """The fitted preprocessing and coefficients as plain numbers (enough to write the model in SQL).

    p = 1 / (1 + exp(-(intercept + sum(coef[j] * z[j])))) where z is, for ``scale``,
    (x - mean) / scale per feature; for quantile bins, one indicator per bin of each
    continuous feature (bin k: edges[k] <= x < edges[k+1], the first and last bins
    open-ended), followed by the binary features passed through.
    """
    prep, clf = pipeline.named_steps["prep"], pipeline.named_steps["clf"]
    out: dict[str, Any] = {
        "preprocessing": prep_name(prep),
        "coef": [float(c) for c in clf.coef_[0]],
        "intercept": float(clf.intercept_[0]),
    }
    if out["preprocessing"] == "scale":
        out["mean"] = [float(v) for v in prep.mean_]
        out["scale"] = [float(v) for v in prep.scale_]
        out["columns"] = spec.feature_names
    else:
        bins = prep.named_transformers_[out["preprocessing"]]
        cont = [f.name for f in spec.features if f.kind == "continuous"]
        out["edges"] = {name: [float(e) for e in edges] for name, edges in zip(cont, bins.bin_edges_)}
        out["passthrough"] = [f.name for f in spec.features if f.kind != "continuous"]
        out["columns"] = [
            f"{name}[bin{k}]" for name, edges in zip(cont, bins.bin_edges_) for k in range(len(edges) - 1)
        ] + out["passthrough"]
    return out


def _complexity(choice: str) -> tuple[int, int]:
    return (0, 0) if choice == "scale" else (1, int(choice[4:]))


def simplicity_key(params: dict) -> tuple:
    """Sort key of the tie-break: simplest, most regularised first (see module docstring)."""
    p = readable_params(params)
    return (
        _complexity(p["preprocessing"]),
        p["C"],
        p["l1_ratio"],
        p["class_weight"] is not None,
        str(p["class_weight"]),
        p["solver"],
    )


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
    """The plain GridSearchCV over the same grid (stratified k-fold, fixed seed, refit by :func:`select_one_se`).

    Training uses :class:`mallscore.training.search.PathSearch` (same grid, folds
    and rule, computed faster); this one stays as the benchmarks' baseline and the
    reference the tests hold the fast search to.
    """
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
    search_rows: int

    def as_card(self) -> dict:
        """The ``tuning`` block of the card."""
        return {
            "rule": SELECTION_RULE,
            "n_configs": self.n_configs,
            "n_within_one_se": self.n_eligible,
            "selected_cv_log_loss": self.cv_log_loss,
            "selected_cv_roc_auc": self.cv_roc_auc,
            "search_rows": self.search_rows,
            "search_sample_rule": SEARCH_SAMPLE_RULE,
            "method": "shared fold preprocessing, warm-started C paths (mallscore.training.search)",
        }


def _tuning_result(search) -> TuningResult:
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
        search_rows=int(search.search_rows_),
    )


def tune(X: np.ndarray, y: np.ndarray, spec: ModelSpec, budget: Budget) -> TuningResult:
    """Run the grid search on ``X, y`` and return the configuration the tie-break rule picked."""
    from mallscore.training.search import PathSearch

    return _tuning_result(PathSearch(spec, budget).fit(X, y))


def _search_job(tag: int, spec: ModelSpec, budget: Budget, X_fit, y_fit, X_eval, y_eval) -> tuple[int, float, Any]:
    """One whole search in a worker: the tuning search (tag 0) or one outer fold of nested CV."""
    import time

    from mallscore.training.search import PathSearch

    start = time.perf_counter()
    search = PathSearch(spec, budget).fit(X_fit, y_fit)
    if X_eval is None:
        return tag, time.perf_counter() - start, search
    p = search.predict_proba(X_eval)[:, 1]
    fold = {"roc_auc": roc_auc(y_eval, p), "params": readable_params(search.cv_results_["params"][search.best_index_])}
    return tag, time.perf_counter() - start, fold


def tune_and_nested_cv(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    spec: ModelSpec,
    budget: Budget,
    on_done: Callable[[], None] | None = None,
) -> tuple[TuningResult, dict]:
    """The tuning search on the training split and nested CV on all rows, as one pool of whole searches.

    Nested CV re-runs the whole search (grid + tie-break) inside each outer fold
    and scores ROC-AUC on the fold left out. The 1 + outer-fold searches are
    independent, so they run side by side on ``budget.n_jobs`` workers (each
    search single-process): a few big jobs keep both cores busy with far less
    dispatch overhead than thousands of single fits.
    """
    from joblib import Parallel, delayed
    from sklearn.model_selection import StratifiedKFold

    outer = StratifiedKFold(budget.nested_outer, shuffle=True, random_state=budget.seed + 1)
    jobs = [delayed(_search_job)(0, spec, budget, X_train, y_train, None, None)]
    jobs += [
        delayed(_search_job)(k + 1, spec, budget, X[tr], y[tr], X[te], y[te])
        for k, (tr, te) in enumerate(outer.split(X, y))
    ]
    results: dict[int, tuple[float, Any]] = {}
    for tag, seconds, value in Parallel(n_jobs=budget.n_jobs, return_as="generator_unordered")(jobs):
        results[tag] = (seconds, value)
        if on_done:
            on_done()
    tuned = _tuning_result(results[0][1])
    folds = [results[k][1] for k in sorted(results) if k > 0]
    scores = [f["roc_auc"] for f in folds]
    nested = {
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
        "folds": scores,
        "outer_folds": len(scores),
        "fold_params": [f["params"] for f in folds],
        "search_seconds": {
            "tuning": round(results[0][0], 3),
            "nested": round(sum(results[k][0] for k in results if k > 0), 3),
        },
    }
    return tuned, nested
