"""Evaluation with spread: holdout metrics, repeated CV, threshold, tiers, odds ratios, calibration.

Every headline number comes with its spread, and every choice made from data
(threshold, tier cut-offs) is made on out-of-fold predictions, never on the
rows it is then judged on.

Rules, stated once:

* Threshold: on out-of-fold probabilities of the training split, the cut that
  maximises Youden's J (recall + specificity - 1, i.e. balanced accuracy); ties
  go to the higher cut (fewer false positives). The stored threshold is the
  midpoint between the chosen probability and the next lower one, so float32
  rounding in ONNX cannot move a training row across it.
* Tiers by probability: on the same out-of-fold probabilities, premium = top
  20%, loyalty = next 30%, nurture = next 25%, low_priority = the rest (min_p 0).
  Cut-offs are midpoints between neighbouring probabilities. A customer's tier
  is the first whose ``min_p <= p``. Each tier reports its observed
  high-spender rate (Wilson 95% interval), its lift over the base rate and its
  share of customers.
* Tiers by observed score (customers whose spending score is already known):
  the first tier whose ``min_score <= score``: premium 75, loyalty from the
  label's cut (51 for ``spending_score > 50``, read from ``sql/25_label_rule.sql``),
  nurture 35, low_priority 1: a known high spender is at least loyalty.
* Odds ratios: per one standard deviation of each feature, from a standardised
  logistic regression with the tuned C, l1_ratio and class_weight, fitted on all
  labelled rows; 95% percentile intervals from bootstrap resamples of the rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from mallscore.stats import wilson
from mallscore.training.budget import Budget
from mallscore.training.leakage import roc_auc

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")
TIER_RULES = (
    # name, share of customers by probability, min observed spending score (None: the label's cut)
    ("premium", 0.20, 75.0),
    ("loyalty", 0.30, None),
    ("nurture", 0.25, 35.0),
    ("low_priority", 0.25, 1.0),
)
THRESHOLD_RULE = (
    "maximise Youden's J (recall + specificity - 1) on out-of-fold probabilities of the training split; "
    "ties go to the higher cut; stored as the midpoint to the next lower probability; predicted = p >= threshold"
)
TIER_RULE = (
    "by probability: premium top 20%, loyalty next 30%, nurture next 25%, low_priority the rest, cut on "
    "out-of-fold probabilities (tier = first with min_p <= p); by observed score: first with min_score <= score "
    "(premium 75, loyalty from the label's cut, nurture 35, low_priority 1)"
)


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """Accuracy, precision, recall, F1 at ``threshold``; ROC-AUC and PR-AUC; confusion [[tn, fp], [fn, tp]]."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(y).astype(int)
    pred = (np.asarray(p) >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / y.size,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc(y, p),
        "pr_auc": float(average_precision_score(y, p)),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def oof_probabilities(make_pipe: Callable[[], object], X: np.ndarray, y: np.ndarray, budget: Budget) -> np.ndarray:
    """Out-of-fold probabilities (stratified k-fold, fixed seed) of a fixed configuration."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    cv = StratifiedKFold(budget.cv_splits, shuffle=True, random_state=budget.seed + 2)
    return cross_val_predict(make_pipe(), X, y, cv=cv, method="predict_proba")[:, 1]


def _midpoint_below(sorted_desc: np.ndarray, i: int) -> float:
    """Midpoint between the i-th distinct value (descending) and the next lower one."""
    upper = float(sorted_desc[i])
    lower = float(sorted_desc[i + 1]) if i + 1 < sorted_desc.size else 0.0
    return (upper + lower) / 2.0


def choose_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The decision threshold by Youden's J on out-of-fold probabilities (see module docstring)."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=float)
    order = np.argsort(-p, kind="mergesort")
    p_sorted, y_sorted = p[order], y[order]
    # predicting p >= cut for each distinct cut, from the highest down: counts at the end of each tie group
    last_of_group = np.flatnonzero(np.r_[p_sorted[1:] != p_sorted[:-1], True])
    tp = np.cumsum(y_sorted)[last_of_group]
    fp = np.cumsum(~y_sorted)[last_of_group]
    j = tp / max(int(y.sum()), 1) - fp / max(int((~y).sum()), 1)
    best_i = int(np.flatnonzero(j >= j.max() - 1e-12)[0])  # ties: the higher cut
    cuts = p_sorted[last_of_group]
    return _midpoint_below(cuts, best_i)


def repeated_cv(
    make_pipe: Callable[[], object], X: np.ndarray, y: np.ndarray, threshold: float, budget: Budget
) -> dict:
    """Repeated stratified k-fold of a fixed configuration: mean, std and fold values per metric."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    cv = RepeatedStratifiedKFold(n_splits=budget.cv_splits, n_repeats=budget.cv_repeats, random_state=budget.seed + 3)
    scores: dict[str, list[float]] = {m: [] for m in METRICS}
    for train, test in cv.split(X, y):
        model = make_pipe().fit(X[train], y[train])
        got = classification_metrics(y[test], model.predict_proba(X[test])[:, 1], threshold)
        for m in METRICS:
            scores[m].append(float(got[m]))
    return {m: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)), "folds": v} for m, v in scores.items()}


def _bootstrap_coefs(X: np.ndarray, y: np.ndarray, params: dict, seed: int, draws: list[np.ndarray]) -> np.ndarray:
    """Coefficients of the standardised logistic regression on each resample (rows ``X[idx]`` per ``idx``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    def fit(Xs, ys) -> np.ndarray:
        model = Pipeline(
            [("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=10_000, random_state=seed, **params))]
        )
        return model.fit(Xs, ys).named_steps["clf"].coef_[0]

    return np.array([fit(X[idx], y[idx]) for idx in draws]).reshape(len(draws), X.shape[1])


def bootstrap_odds_ratios(
    X: np.ndarray,
    y: np.ndarray,
    features: list[str],
    clf_params: dict,
    budget: Budget,
    on_step: Callable[[int], None] | None = None,
) -> dict:
    """Odds ratio per standard deviation of each feature, with bootstrap 95% percentile intervals.

    The resamples are drawn here, in order, from one seeded generator, then fitted
    in ``budget.n_jobs`` chunks side by side: the same resamples and the same
    intervals whatever the number of workers.
    """
    from joblib import Parallel, delayed

    params = {k: v for k, v in clf_params.items() if k != "preprocessing"}
    point = np.exp(_bootstrap_coefs(X, y, params, budget.seed, [np.arange(y.size)])[0])
    rng = np.random.default_rng(budget.seed + 4)
    resamples = [rng.integers(0, y.size, y.size) for _ in range(budget.bootstrap)]
    resamples = [idx for idx in resamples if np.unique(y[idx]).size == 2]
    chunk = 50
    chunks = [resamples[i : i + chunk] for i in range(0, len(resamples), chunk)]
    jobs = (delayed(_bootstrap_coefs)(X, y, params, budget.seed, part) for part in chunks)
    coefs = []
    for part, got in zip(chunks, Parallel(n_jobs=min(budget.n_jobs, max(len(chunks), 1)), return_as="generator")(jobs)):
        coefs.append(got)
        if on_step:
            on_step(len(part))
    draws_arr = np.exp(np.concatenate(coefs))
    low, high = np.percentile(draws_arr, [2.5, 97.5], axis=0)
    sd = X.std(axis=0)
    return {
        name: {
            "odds_ratio": _finite(point[i]),
            "ci_low": _finite(low[i]),
            "ci_high": _finite(high[i]),
            "per": "1 standard deviation",
            "sd": float(sd[i]),
        }
        for i, name in enumerate(features)
    }


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def make_tiers(y: np.ndarray, p: np.ndarray, high_spender_above: int) -> list[dict]:
    """Tier cut-offs on out-of-fold probabilities, with observed rate, lift and share (best first).

    ``high_spender_above`` is the label's cut: the loyalty tier's observed scores start just above it.
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    order = np.sort(p)[::-1]
    base = float(y.mean())
    tiers = []
    cumulative = 0.0
    previous_cut = math.inf
    for k, (name, share, min_score) in enumerate(TIER_RULES):
        cumulative += share
        if k == len(TIER_RULES) - 1:
            cut = 0.0
        else:
            n_top = int(round(cumulative * p.size))
            n_top = min(max(n_top, 1), p.size - 1)
            cut = (float(order[n_top - 1]) + float(order[n_top])) / 2.0
        cut = min(cut, previous_cut)
        members = (p >= cut) & (p < previous_cut)
        n = int(members.sum())
        hits = int(y[members].sum())
        rate = hits / n if n else None
        low, high = wilson(hits, n)
        tiers.append(
            {
                "name": name,
                "min_p": cut,
                "min_score": float(high_spender_above + 1) if min_score is None else min_score,
                "observed_rate": rate,
                "lift": rate / base if rate is not None and base > 0 else None,
                "share": n / p.size,
                "n": n,
                "rate_ci_low": low,
                "rate_ci_high": high,
            }
        )
        previous_cut = cut
    return tiers


def calibration_points(y: np.ndarray, p: np.ndarray, n_bins: int = 8) -> dict:
    """Mean predicted vs observed rate in quantile bins of the probability (for the calibration curve)."""
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(y, p, n_bins=n_bins, strategy="quantile")
    return {"predicted": [float(v) for v in predicted], "observed": [float(v) for v in observed]}
