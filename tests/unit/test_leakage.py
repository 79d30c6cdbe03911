"""The leakage guard flags a feature that defines the label, and only that one."""

import numpy as np
import pandas as pd
import pytest

from mallscore.errors import BadInputError
from mallscore.training.leakage import LeakageError, check_leakage, guard, perfect_split, roc_auc


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.integers(1, 101, n).astype(float)
    age = np.clip(np.rint(60 - 0.3 * score + rng.normal(0, 10, n)), 18, 70)
    return pd.DataFrame(
        {
            "age": age,
            "annual_income": rng.integers(15, 138, n).astype(float),
            "gender_female": (rng.random(n) < 0.56).astype(float),
            "spending_score": score,
            "high_spender": (score > 50).astype(int),
        }
    )


def test_feature_that_defines_the_label_is_flagged_and_no_other():
    frame = _frame()
    report = check_leakage(frame, ["age", "annual_income", "gender_female", "spending_score"], "high_spender")
    assert report.flagged == ["spending_score"]
    assert report.per_feature["spending_score"] == {"auc": 1.0, "perfect_split": True}
    assert 0.6 < report.per_feature["age"]["auc"] < 0.98  # informative, not a leak
    assert not report.per_feature["age"]["perfect_split"]


def test_auc_is_symmetric_so_a_reversed_leak_is_caught():
    frame = _frame()
    frame["minus_score"] = -frame["spending_score"]
    report = check_leakage(frame, ["minus_score"], "high_spender")
    assert report.flagged == ["minus_score"] and report.per_feature["minus_score"]["auc"] == 1.0


def test_near_perfect_feature_without_a_clean_split_is_flagged_by_auc():
    frame = _frame(1000, seed=1)
    noisy = frame["spending_score"].to_numpy().copy()
    noisy[:3] = 100 - noisy[:3]  # a few swaps: no perfect split any more, AUC still ~0.99
    frame["noisy_score"] = noisy
    report = check_leakage(frame, ["noisy_score"], "high_spender")
    assert not report.per_feature["noisy_score"]["perfect_split"]
    assert report.per_feature["noisy_score"]["auc"] >= 0.98
    assert report.flagged == ["noisy_score"]


def test_rank_auc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    s = rng.integers(0, 10, 500).astype(float) + y  # many ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_perfect_split_needs_both_classes_separated():
    assert perfect_split(np.array([0, 0, 1, 1]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert not perfect_split(np.array([0, 1, 0, 1]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert not perfect_split(np.array([1, 1]), np.array([1.0, 2.0]))


def test_guard_stops_with_exit_65_naming_the_feature_unless_allowed():
    report = check_leakage(_frame(), ["age", "spending_score"], "high_spender")
    with pytest.raises(LeakageError) as exc:
        guard(report, "seed", allow_leakage=False)
    assert isinstance(exc.value, BadInputError) and exc.value.exit_code == 65
    assert "spending_score" in str(exc.value) and "--allow-leakage" in str(exc.value)
    assert "age (" not in str(exc.value)  # only the leaking feature is named
    guard(report, "seed", allow_leakage=True)  # allowed: no exception
