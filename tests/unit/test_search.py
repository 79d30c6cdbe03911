"""The fast search: the same grid, folds and choice as GridSearchCV, and honest estimates with a search sample."""

from dataclasses import replace

import numpy as np

from mallscore.specs import get_spec
from mallscore.training import tuning
from mallscore.training.budget import FULL, Budget
from mallscore.training.search import PathSearch, search_sample
from tests.helpers import labelled_features
from tests.scoring_support import training_rows

SPEC = get_spec("default")


def test_full_budget_on_a_small_warehouse_matches_grid_search_and_its_tie_rule():
    X, y = labelled_features(160)
    fast = PathSearch(SPEC, FULL).fit(X, y)
    slow = tuning.make_search(SPEC, FULL, n_jobs=1).fit(X, y)
    assert len(fast.cv_results_["params"]) == len(slow.cv_results_["params"]) >= 200
    for key in ("mean_test_neg_log_loss", "std_test_neg_log_loss", "mean_test_roc_auc"):
        np.testing.assert_allclose(fast.cv_results_[key], slow.cv_results_[key], atol=2e-3)
    assert tuning.readable_params(fast.best_params_) == tuning.readable_params(slow.best_params_)
    assert fast.search_rows_ == 160
    np.testing.assert_allclose(fast.predict_proba(X), slow.predict_proba(X), atol=1e-6)  # same refit


def test_search_sample_is_stratified_deterministic_and_only_when_needed():
    y = np.array([0] * 700 + [1] * 300)
    keep = search_sample(y, 100, seed=42)
    assert keep.size == 100 and np.unique(keep).size == 100 and (np.diff(keep) > 0).all()
    assert abs(int(y[keep].sum()) - 30) <= 1
    assert (search_sample(y, 100, seed=42) == keep).all()
    assert search_sample(y, 1000, seed=42).size == 1000 and search_sample(y, None, seed=42).size == 1000


def test_search_sample_decides_the_configuration_and_the_refit_uses_every_row():
    X, y = labelled_features(600)
    small = replace(FULL, n_c_values=3, cv_splits=3, search_rows=200)
    search = PathSearch(SPEC, small).fit(X, y)
    assert search.search_rows_ == 200
    alone = PathSearch(SPEC, replace(small, search_rows=None)).fit(
        X[search_sample(y, 200, 42)], y[search_sample(y, 200, 42)]
    )
    assert search.best_index_ == alone.best_index_  # the sample alone decides
    refit = tuning.make_pipeline(SPEC, small, tuning.readable_params(search.best_params_)).fit(X, y)
    np.testing.assert_allclose(search.predict_proba(X), refit.predict_proba(X), atol=1e-9)


def test_nested_cv_on_100k_customers_stays_within_the_spread_of_the_full_search():
    X_all, y_all = training_rows(100_000, seed=5)
    rows = np.sort(np.random.default_rng(0).choice(y_all.size, 20_000, replace=False))  # as train samples 20,000
    X, y = X_all[rows], y_all[rows]
    budget = Budget("test", n_c_values=2, cv_splits=3, nested_outer=3, n_jobs=1, search_rows=2_000)
    _, new = tuning.tune_and_nested_cv(X[:100], y[:100], X, y, SPEC, budget)
    _, old = tuning.tune_and_nested_cv(X[:100], y[:100], X, y, SPEC, replace(budget, search_rows=None))
    assert old["std"] > 0
    assert abs(new["mean"] - old["mean"]) <= old["std"], (new, old)
    assert np.max(np.abs(np.array(new["folds"]) - np.array(old["folds"]))) <= 3 * old["std"]
