"""The leakage guard: a feature that alone separates the label is a leak, not a discovery.

The original notebook labelled HighSpender = score > 50 and then fed the score
to the model; its perfect metrics were the label read back. Before any tuning,
every feature's single-feature ROC-AUC (symmetric: a feature that ranks the
classes backwards is as informative) and whether one threshold separates the
classes perfectly are measured. Pure numpy, so it is cheap and testable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mallscore.errors import BadInputError

AUC_LIMIT = 0.98


class LeakageError(BadInputError):
    """A spec's feature separates the label on its own; training stops unless leakage is allowed."""


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC by the rank-sum (Mann-Whitney) formula, ties counted half."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    sorted_scores = score[order]
    ranks = np.empty(score.size, dtype=np.float64)
    # average rank of each group of ties
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [score.size]))
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def perfect_split(y: np.ndarray, values: np.ndarray) -> bool:
    """True when one threshold puts every positive on one side and every negative on the other."""
    y = np.asarray(y).astype(bool)
    values = np.asarray(values, dtype=np.float64)
    pos, neg = values[y], values[~y]
    if pos.size == 0 or neg.size == 0:
        return False
    return bool(pos.min() > neg.max() or pos.max() < neg.min())


@dataclass(frozen=True)
class LeakageReport:
    """Per-feature single-feature AUC and perfect-split flags, and the features flagged."""

    per_feature: dict[str, dict]
    flagged: list[str]
    limit: float = AUC_LIMIT

    def as_card(self) -> dict:
        """The ``leakage`` block of the model card."""
        return {"flagged": list(self.flagged), "per_feature": self.per_feature, "auc_limit": self.limit}


def check_leakage(frame: pd.DataFrame, features: list[str], label: str, limit: float = AUC_LIMIT) -> LeakageReport:
    """Measure every feature alone against the label; flag AUC >= ``limit`` or a perfect split."""
    y = frame[label].to_numpy()
    per_feature: dict[str, dict] = {}
    flagged: list[str] = []
    for name in features:
        values = frame[name].to_numpy(dtype=np.float64)
        auc = roc_auc(y, values)
        auc = max(auc, 1.0 - auc)
        split = perfect_split(y, values)
        per_feature[name] = {"auc": round(auc, 6), "perfect_split": split}
        if auc >= limit or split:
            flagged.append(name)
    return LeakageReport(per_feature, flagged, limit)


def leakage_message(report: LeakageReport, spec_name: str) -> str:
    """One actionable line naming the leaking features."""
    parts = []
    for name in report.flagged:
        info = report.per_feature[name]
        split = "one threshold separates the classes, " if info["perfect_split"] else ""
        parts.append(f"{name} ({split}single-feature AUC {info['auc']:.3f}, limit {report.limit:g})")
    return (
        f"target leakage in spec {spec_name!r}: {'; '.join(parts)}. "
        "A model on it cannot be used for customers whose score is unknown. "
        "Use --spec default, or pass --allow-leakage to train it anyway (it will never be promoted)."
    )


def guard(report: LeakageReport, spec_name: str, allow_leakage: bool) -> None:
    """Raise LeakageError (exit 65) when a feature is flagged and leakage is not allowed."""
    if report.flagged and not allow_leakage:
        raise LeakageError(leakage_message(report, spec_name))
