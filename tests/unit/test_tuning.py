"""Tuning: the grid is big enough, and the tie-break picks the same configuration whatever the grid order."""

import numpy as np
import pytest

from mallscore.specs import SPECS, get_spec
from mallscore.training import tuning
from mallscore.training.budget import FULL, QUICK
from tests.helpers import labelled_features


@pytest.mark.parametrize("name", sorted(SPECS))
def test_full_grid_has_at_least_200_configurations_without_fitting(name):
    spec = get_spec(name)
    n = tuning.count_configs(spec, FULL)
    assert n >= 200
    assert n == len(tuning.prep_choices(spec)) * len(spec.penalties) * FULL.n_c_values * 2


def _results(rows: list[tuple[str, float, float, str, float, float]]) -> dict:
    """Fake cv_results_: (prep, C, l1_ratio, solver, mean log loss, std) per row, 5 folds."""
    from mallscore.training.tuning import make_preprocessor

    spec = get_spec("default")
    preps = {c: make_preprocessor(spec, c) for c in ("scale", "bins5")}
    params = [
        {"prep": preps[p], "clf__C": c, "clf__l1_ratio": l1, "clf__solver": s, "clf__class_weight": None}
        for p, c, l1, s, _, _ in rows
    ]
    res = {
        "params": params,
        "mean_test_neg_log_loss": np.array([-m for *_, m, _ in rows]),
        "std_test_neg_log_loss": np.array([sd for *_, sd in rows]),
    }
    for k in range(5):
        res[f"split{k}_test_neg_log_loss"] = res["mean_test_neg_log_loss"]
    return res


def test_one_se_rule_prefers_simplest_then_most_regularised():
    rows = [
        ("bins5", 0.01, 0.0, "newton-cholesky", 0.600, 0.05),  # best, but bins
        ("scale", 10.0, 0.0, "newton-cholesky", 0.620, 0.05),  # within 1 SE (0.05/sqrt5 = 0.022)
        ("scale", 0.1, 0.0, "newton-cholesky", 0.615, 0.05),  # within, smaller C -> chosen
        ("scale", 0.001, 0.0, "newton-cholesky", 0.700, 0.05),  # most regularised but outside 1 SE
    ]
    res = _results(rows)
    assert tuning.select_one_se(res) == 2
    assert sorted(tuning.eligible_within_one_se(res).tolist()) == [0, 1, 2]


def test_tie_break_does_not_depend_on_row_order():
    rows = [("scale", c, l1, s, 0.60, 0.0) for c in (1.0, 0.1, 10.0) for l1, s in ((0.0, "saga"), (1.0, "liblinear"))]
    first = _results(rows)
    chosen = tuning.readable_params(first["params"][tuning.select_one_se(first)])
    for perm in (list(reversed(rows)), rows[3:] + rows[:3]):
        again = _results(perm)
        assert tuning.readable_params(again["params"][tuning.select_one_se(again)]) == chosen
    assert chosen["C"] == 0.1 and chosen["l1_ratio"] == 0.0


def test_search_is_deterministic_and_independent_of_grid_order(monkeypatch):
    X, y = labelled_features(160)
    spec = get_spec("default")
    budget = QUICK
    first = tuning.tune(X, y, spec, budget)
    again = tuning.tune(X, y, spec, budget)
    assert first.best_params == again.best_params
    assert first.n_eligible > 1  # there are ties to break on 160 rows

    original = tuning.param_grid

    def reversed_grid(spec_, budget_):
        return [{k: list(reversed(v)) for k, v in entry.items()} for entry in reversed(original(spec_, budget_))]

    monkeypatch.setattr(tuning, "param_grid", reversed_grid)
    flipped = tuning.tune(X, y, spec, budget)
    assert flipped.best_params == first.best_params
    assert flipped.n_configs == first.n_configs
