"""Fitting behaviour groups: k by silhouette with its spread, the final k-means, and the groups' names.

Scaling: income (k$) and score (1-100) are standardised, so each counts equally in the
distances whatever its unit. k-means runs ``N_INIT`` initialisations with a fixed seed.

Choosing k (``auto``; a given k gets only its own spread): for each k in the spec's range, ``REPEATS`` fits, each on a bootstrap
resample of the rows with its own seed, scored by the mean silhouette on (a sample of at most
``SILHOUETTE_SAMPLE`` of) that resample; the k with the best mean wins, and the card records
every k's mean and standard deviation, and the runner-up.

Names: each centre is read against the population (its z-score per feature: below -0.5 ``low``,
above 0.5 ``high``, else ``mid``), e.g. ``high income, low spend``. A retrain keeps the name of
the previous champion's group whose centre is nearest, one to one, when it moved less than
``KEEP_NAME_DISTANCE`` (population standard deviations): names are stable when centres barely move.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_INIT = 10  # the final fit
SPREAD_N_INIT = 3  # each of the REPEATS fits per k (their spread is the point, not one best fit)
REPEATS = 5
SILHOUETTE_SAMPLE = 2000
SEED = 0
KEEP_NAME_DISTANCE = 0.25
LEVEL_CUT = 0.5
WORDS = {"annual_income": "income", "spending_score": "spend"}


@dataclass
class Fitted:
    """The chosen k-means and what the card says about it."""

    pipeline: object  # sklearn Pipeline(StandardScaler, KMeans)
    k: int
    mode: str  # "auto" or "fixed"
    reason: str
    silhouette: dict[int, dict]
    labels: np.ndarray


def make_pipeline(k: int, seed: int = SEED, n_init: int = N_INIT):
    """StandardScaler + KMeans(k) with several initialisations and a fixed seed."""
    from sklearn.cluster import KMeans
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("kmeans", KMeans(k, n_init=n_init, random_state=seed))])


def silhouette_spread(X: np.ndarray, k: int, repeats: int = REPEATS, seed: int = SEED) -> dict:
    """Mean and std of the silhouette of k-means(k) over ``repeats`` bootstrap resamples and seeds."""
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed + 1000 * k)
    values = []
    for r in range(repeats):
        rows = X[rng.integers(0, len(X), len(X))]
        pipe = make_pipeline(k, seed + r, SPREAD_N_INIT).fit(rows)
        labels = pipe[-1].labels_
        if len(set(labels.tolist())) < 2:
            values.append(-1.0)
            continue
        sample = min(SILHOUETTE_SAMPLE, len(rows))
        values.append(
            float(silhouette_score(pipe[0].transform(rows), labels, sample_size=sample, random_state=seed + r))
        )
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if repeats > 1 else 0.0,
        "runs": repeats,
    }


def choose_k(X: np.ndarray, k: int | None, k_range: tuple[int, int], progress=None) -> tuple[int, str, str, dict]:
    """(k, mode, reason, silhouette per k): the best mean silhouette in ``k_range``, or the fixed ``k``."""
    lo, hi = k_range
    ks = [k] if k is not None else list(range(lo, min(hi, len(X) - 1) + 1))  # a given k: only its own spread
    silhouette = {}
    for done, kk in enumerate(ks):
        silhouette[kk] = silhouette_spread(X, kk)
        if progress is not None:
            progress("k", done + 1, len(ks))
    ranked = sorted(ks, key=lambda kk: (-silhouette[kk]["mean"], kk))
    if k is not None:
        s = silhouette[k]
        return k, "fixed", f"k = {k} was given (--k); mean silhouette {s['mean']:.3f} +- {s['std']:.3f}", silhouette
    best, second = ranked[0], ranked[1] if len(ranked) > 1 else None
    b = silhouette[best]
    reason = f"k = {best} has the best mean silhouette, {b['mean']:.3f} +- {b['std']:.3f}"
    if second is not None:
        s = silhouette[second]
        gap = b["mean"] - s["mean"]
        noise = float(np.hypot(b["std"], s["std"]))
        reason += (
            f"; next best k = {second} at {s['mean']:.3f} +- {s['std']:.3f} "
            f"({'clearly' if gap > noise else 'within the spread, so not clearly'} better: gap {gap:.3f})"
        )
    return best, "auto", reason, silhouette


def fit_groups(X: np.ndarray, k: int | None, k_range: tuple[int, int], progress=None) -> Fitted:
    """Choose k (or take it), then fit the final k-means on every row (BLAS/OpenMP on one thread:
    on small data a busy machine's thread pools cost more than they give)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        chosen, mode, reason, silhouette = choose_k(X, k, k_range, progress)
        pipe = make_pipeline(chosen).fit(X)
    return Fitted(pipe, chosen, mode, reason, silhouette, pipe[-1].labels_)


def level(z: float) -> str:
    """``low``, ``mid`` or ``high`` for a centre's z-score against the population."""
    return "low" if z < -LEVEL_CUT else "high" if z > LEVEL_CUT else "mid"


def generated_names(centres_z: np.ndarray, features: list[str]) -> list[str]:
    """A name per centre from its z-scores (``high income, low spend``); repeats get ``(1)``, ``(2)`` in centre order."""
    from collections import Counter

    base = [", ".join(f"{level(z)} {WORDS.get(f, f)}" for z, f in zip(row, features)) for row in centres_z]
    counts, seen, out = Counter(base), Counter(), [""] * len(base)
    for i in np.lexsort(centres_z.T[::-1]):  # numbered by centre (first feature, then the next), not fit order
        seen[base[i]] += 1
        out[i] = base[i] if counts[base[i]] == 1 else f"{base[i]} ({seen[base[i]]})"
    return out


def stable_names(
    centres_z: np.ndarray, features: list[str], previous: list[tuple[str, np.ndarray]] | None
) -> tuple[list[str], list[str]]:
    """Names for the centres (z-scores), keeping a previous group's name where its centre barely moved.

    ``previous`` is the champion's (name, centre z-scores) list. Returns (names, kept names).
    """
    names = generated_names(centres_z, features)
    if not previous:
        return names, []
    from scipy.optimize import linear_sum_assignment

    old = np.array([c for _, c in previous], dtype=float)
    cost = np.linalg.norm(centres_z[:, None, :] - old[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(cost)
    kept = {int(r): previous[c][0] for r, c in zip(rows, cols) if cost[r, c] <= KEEP_NAME_DISTANCE}
    taken = set(kept.values())
    out = []
    for i, name in enumerate(names):
        if i in kept:
            out.append(kept[i])
            continue
        candidate, n = name, 2
        while candidate in taken:
            candidate, n = f"{name} ({n})", n + 1
        taken.add(candidate)
        out.append(candidate)
    return out, sorted(kept.values())
