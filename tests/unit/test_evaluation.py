"""Threshold and tier rules on out-of-fold probabilities."""

import numpy as np
import pytest

from mallscore.training import evaluation


def _slow_youden(y, p):
    cuts = np.unique(p)[::-1]
    best, best_cut = -np.inf, None
    for i, cut in enumerate(cuts):
        pred = p >= cut
        j = (pred & y).sum() / y.sum() - (pred & ~y).sum() / (~y).sum()
        if j > best + 1e-12:
            best, best_cut = j, (cut + (cuts[i + 1] if i + 1 < cuts.size else 0.0)) / 2
    return best_cut


def test_threshold_maximises_youden_j_and_sits_between_probabilities():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.random(300) < 0.45
        p = np.round(np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.2, 300), 0, 1), 2)  # ties on purpose
        t = evaluation.choose_threshold(y, p)
        assert t == pytest.approx(_slow_youden(y, p))
        assert not np.isclose(p, t).any()


def test_threshold_on_separable_data_splits_the_classes():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert evaluation.choose_threshold(y, p) == pytest.approx(0.5)


def test_tiers_are_ordered_cover_everyone_and_report_lift():
    rng = np.random.default_rng(1)
    p = rng.random(1000)
    y = (rng.random(1000) < p).astype(int)
    tiers = evaluation.make_tiers(y, p, 50)
    assert [t["name"] for t in tiers] == ["premium", "loyalty", "nurture", "low_priority"]
    assert [t["min_score"] for t in tiers] == [75, 51, 35, 1]
    assert tiers[-1]["min_p"] == 0.0
    assert [t["share"] for t in tiers] == pytest.approx([0.2, 0.3, 0.25, 0.25])
    assert sum(t["n"] for t in tiers) == 1000
    lifts = [t["lift"] for t in tiers]
    assert lifts == sorted(lifts, reverse=True) and lifts[0] > 1.5
    for t in tiers:
        assert t["rate_ci_low"] <= t["observed_rate"] <= t["rate_ci_high"]
    counts = {t["name"]: 0 for t in tiers}
    for value in p:  # the tier rule: the first tier (best first) whose min_p the probability reaches
        counts[next(t["name"] for t in tiers if t["min_p"] <= value)] += 1
    assert [counts[t["name"]] for t in tiers] == [t["n"] for t in tiers]


def test_the_label_cut_is_read_from_its_one_sql_file_and_starts_the_loyalty_tier():
    from mallscore.warehouse import label_rule

    rule = label_rule()
    assert rule == {"high_spender_above": 50, "definition": "spending_score > 50"}
    rng = np.random.default_rng(0)
    tiers = evaluation.make_tiers(rng.integers(0, 2, 200), rng.random(200), 60)
    assert [t["min_score"] for t in tiers] == [75, 61, 35, 1]


def test_metrics_at_threshold_and_confusion_matrix():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.2, 0.6, 0.4, 0.9])
    m = evaluation.classification_metrics(y, p, 0.5)
    assert m["confusion_matrix"] == [[1, 1], [1, 1]]
    assert m["accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 0.5
    assert m["roc_auc"] == 0.75
