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


def test_the_default_budget_is_the_full_grid_of_at_least_200_configurations():
    """`mallscore train` (and jobs/train.py, and train_frame) without --budget search the full grid."""
    import inspect

    import typer

    import mallscore.cli  # noqa: F401  (registers the commands)
    from mallscore.cli.app import app
    from mallscore.training import get_budget, train_frame

    [option] = [p for p in typer.main.get_command(app).commands["train"].params if p.name == "budget"]
    defaults = {
        "cli": get_budget(option.default),
        "train_frame": inspect.signature(train_frame).parameters["budget"].default,
    }
    for where, budget in defaults.items():
        assert budget == FULL, where
        for name in sorted(SPECS):
            assert tuning.count_configs(get_spec(name), budget) >= 200, (where, name)
    assert tuning.count_configs(get_spec("default"), QUICK) < 200  # so the check above tells the two apart


# --- the tie-break, one key at a time: reversing any key's order makes one of these fail ---------------


def _config(prep="scale", C=1.0, l1_ratio=0.0, solver="newton-cholesky", class_weight=None) -> dict:
    return {"preprocessing": prep, "C": C, "l1_ratio": l1_ratio, "solver": solver, "class_weight": class_weight}


def _cv_results(rows: list[tuple[dict, float, float]]) -> dict:
    """cv_results_ as GridSearchCV leaves them: (readable config, mean CV log loss, its std) per row, 5 folds."""
    spec = get_spec("default")
    params = [
        {
            "prep": tuning.make_preprocessor(spec, c["preprocessing"]),
            "clf__C": c["C"],
            "clf__l1_ratio": c["l1_ratio"],
            "clf__solver": c["solver"],
            "clf__class_weight": c["class_weight"],
        }
        for c, _, _ in rows
    ]
    res = {
        "params": params,
        "mean_test_neg_log_loss": np.array([-loss for _, loss, _ in rows]),
        "std_test_neg_log_loss": np.array([std for *_, std in rows]),
    }
    for k in range(5):
        res[f"split{k}_test_neg_log_loss"] = res["mean_test_neg_log_loss"]
    return res


def _chosen(rows: list[tuple[dict, float, float]]) -> dict:
    """The configuration select_one_se picks, checked to be the same whatever the row order."""
    picks = []
    for order in (rows, rows[::-1]):
        res = _cv_results(order)
        picks.append(tuning.readable_params(res["params"][tuning.select_one_se(res)]))
    assert picks[0] == picks[1]
    return picks[0]


# (simpler, other): equally good configurations that differ in one key only -> the simpler wins
KEY_ORDER = {
    "scaling_before_bins": (_config(prep="scale"), _config(prep="bins5")),
    "fewer_bins_first": (_config(prep="bins3"), _config(prep="bins5")),
    "smallest_C": (_config(C=0.1), _config(C=1.0)),
    "l1_ratio_ascending": (_config(solver="saga", l1_ratio=1 / 3), _config(solver="saga", l1_ratio=2 / 3)),
    "class_weight_none_first": (_config(class_weight=None), _config(class_weight="balanced")),
    "solver_name": (_config(solver="liblinear", l1_ratio=1.0), _config(solver="saga", l1_ratio=1.0)),
}


@pytest.mark.parametrize("key", list(KEY_ORDER))
def test_tie_break_key_order(key):
    simpler, other = KEY_ORDER[key]
    assert _chosen([(simpler, 0.60, 0.05), (other, 0.60, 0.05)]) == simpler
    assert _chosen([(other, 0.60, 0.05), (simpler, 0.61, 0.05)]) == simpler  # simpler, a little worse, within 1 SE


# (wins, loses): the earlier key decides even when every later key favours the other configuration
KEY_PRIORITY = {
    "preprocessing_before_C": (
        _config(prep="scale", C=10.0, l1_ratio=1.0, solver="saga", class_weight="balanced"),
        _config(prep="bins5", C=0.001),
    ),
    "C_before_l1_ratio": (
        _config(C=0.01, l1_ratio=1.0, solver="saga", class_weight="balanced"),
        _config(C=0.1, l1_ratio=0.0, solver="liblinear"),
    ),
    "l1_ratio_before_class_weight": (
        _config(l1_ratio=0.0, solver="saga", class_weight="balanced"),
        _config(l1_ratio=1 / 3, solver="liblinear"),
    ),
    "class_weight_before_solver": (
        _config(solver="saga", class_weight=None),
        _config(solver="liblinear", class_weight="balanced"),
    ),
}


@pytest.mark.parametrize("case", list(KEY_PRIORITY))
def test_tie_break_key_priority(case):
    wins, loses = KEY_PRIORITY[case]
    assert _chosen([(wins, 0.60, 0.05), (loses, 0.60, 0.05)]) == wins


def test_only_configurations_within_one_standard_error_of_the_lowest_log_loss_compete():
    se = 0.05 / np.sqrt(5)
    best = _config(prep="bins5", C=10.0, class_weight="balanced")
    near = _config(prep="bins5", C=1.0)  # 0.9 SE worse: eligible, simpler than best
    far = _config(prep="scale", C=0.001)  # 1.1 SE worse: the simplest of all, not eligible
    worst = _config(prep="scale", C=0.0001)  # a high loss must never count as the best
    rows = [(best, 0.60, 0.05), (near, 0.60 + 0.9 * se, 0.05), (far, 0.60 + 1.1 * se, 0.05), (worst, 0.90, 0.05)]
    assert _chosen(rows) == near
    res = _cv_results(rows)
    assert sorted(tuning.eligible_within_one_se(res).tolist()) == [0, 1]
