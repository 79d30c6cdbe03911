"""Behaviour groups, pure parts: choosing k on planted groups, names, the card contract, the SQL argmin."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from mallscore.errors import ConfigError
from mallscore.groups import fit
from mallscore.groups.contract import groups_contract_from_card, nearest_sql
from mallscore.sqlvalues import Literals

PLANTED = np.array([[25.0, 20.0], [25.0, 80.0], [100.0, 20.0], [100.0, 80.0]])  # income k$, score


def planted_rows(centres: np.ndarray, per_group: int = 120, sd: float = 6.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(c, sd, size=(per_group, 2)) for c in centres])


def test_auto_recovers_the_number_and_centres_of_planted_groups():
    X = planted_rows(PLANTED)

    fitted = fit.fit_groups(X, None, (2, 10))

    assert fitted.k == len(PLANTED) and fitted.mode == "auto"
    centres = fitted.pipeline[0].inverse_transform(fitted.pipeline[-1].cluster_centers_)
    found = centres[np.lexsort(centres.T[::-1])]
    assert np.abs(found - PLANTED).max() < 2.0
    spread = fitted.silhouette[fitted.k]
    assert spread["std"] > 0 and all(spread["mean"] > s["mean"] for k, s in fitted.silhouette.items() if k != fitted.k)


def test_a_given_k_is_kept_with_its_own_silhouette_spread():
    fitted = fit.fit_groups(planted_rows(PLANTED, per_group=60), 3, (2, 10))

    assert (fitted.k, fitted.mode, list(fitted.silhouette)) == (3, "fixed", [3])
    assert "k = 3 was given" in fitted.reason


def test_names_come_from_the_centres_relative_to_the_population():
    z = np.array([[1.2, -1.3], [-1.1, 1.2], [0.1, 0.0], [1.0, 1.1], [-1.0, -1.2]])

    names = fit.generated_names(z, ["annual_income", "spending_score"])

    assert names == [
        "high income, low spend",
        "low income, high spend",
        "mid income, mid spend",
        "high income, high spend",
        "low income, low spend",
    ]


def test_repeated_names_are_numbered_in_centre_order():
    z = np.array([[1.0, 1.0], [0.9, 1.2]])

    assert fit.generated_names(z, ["annual_income", "spending_score"]) == [
        "high income, high spend (2)",
        "high income, high spend (1)",
    ]


def test_a_retrain_with_barely_moved_centres_keeps_every_name_whatever_the_order():
    previous = [("upsell", np.array([1.2, -1.3])), ("loyal", np.array([-1.1, 1.2])), ("core", np.array([0.0, 0.0]))]
    moved = np.array([[0.05, 0.02], [-1.08, 1.25], [1.25, -1.27]])  # refitted: other order, tiny moves

    names, kept = fit.stable_names(moved, ["annual_income", "spending_score"], previous)

    assert names == ["core", "loyal", "upsell"] and kept == ["core", "loyal", "upsell"]


def test_a_centre_that_moved_far_gets_a_new_name():
    previous = [("upsell", np.array([1.2, -1.3])), ("loyal", np.array([-1.1, 1.2]))]
    moved = np.array([[1.2, -1.3], [1.0, 1.0]])

    names, kept = fit.stable_names(moved, ["annual_income", "spending_score"], previous)

    assert names == ["upsell", "high income, high spend"] and kept == ["upsell"]


def _card(**change):
    card = {
        "kind": "groups",
        "spec": "groups",
        "version": "g1",
        "k": 2,
        "features": [{"name": "annual_income", "min": 0.0, "max": None}, {"name": "spending_score", "min": 1.0}],
        "scaling": {"mean": [60.0, 50.0], "scale": [25.0, 25.0]},
        "groups": [{"name": "a", "centre_scaled": [-1.0, 0.0]}, {"name": "b", "centre_scaled": [1.0, 0.0]}],
        "onnx": {"inputs": ["annual_income", "spending_score"], "label_output": "label"},
    }
    card.update(change)
    return card


@pytest.mark.parametrize(
    "change, words",
    [
        ({"k": 3}, "k must equal"),
        ({"groups": [{"name": "a", "centre_scaled": [0, 0]}, {"name": "a", "centre_scaled": [1, 1]}]}, "unique"),
        ({"scaling": {"mean": [60.0, 50.0], "scale": [0.0, 25.0]}}, "positive scale"),
        ({"onnx": {"inputs": ["spending_score", "annual_income"], "label_output": "label"}}, "one for one"),
        ({"features": [{"name": "x; drop table segments"}, {"name": "spending_score"}]}, "plain column"),
        # the classifier's feature rules (contract.features_from_card) hold for groups cards too
        ({"features": [{"name": "annual_income", "min": 5.0, "max": 1.0}, {"name": "spending_score"}]}, "above max"),
        ({"features": [{"name": "annual_income", "min": float("nan")}, {"name": "spending_score"}]}, "finite"),
    ],
)
def test_a_malformed_groups_card_is_refused(change, words):
    with pytest.raises(ConfigError, match=words):
        groups_contract_from_card(_card(**change))


def test_sql_nearest_centre_is_the_argmin_and_the_first_on_a_tie():
    gc = groups_contract_from_card(_card())
    distances, name = nearest_sql(gc, Literals(), ["x", "y"])
    sql = (
        f"select x, y, {name} from (select *, {', '.join(f'{d} as __gd_{i}' for i, d in enumerate(distances))} "
        "from (values (10.0, 50.0), (110.0, 50.0), (60.0, 99.0), (59.0, 0.0)) t(x, y)) order by x"
    )

    rows = duckdb.connect().execute(sql).fetchall()

    assert [r[2] for r in rows] == ["a", "a", "a", "b"]  # income 60 is equidistant: the first group wins


def test_the_parity_gate_refuses_a_graph_that_groups_otherwise():
    from mallscore.groups.job import convert, export_onnx
    from mallscore.specs import GROUPS

    X = planted_rows(PLANTED, per_group=40)
    right = fit.make_pipeline(4).fit(X)
    wrong = fit.make_pipeline(4, seed=3).fit(X[::-1] + 15.0)  # other centres

    onnx_bytes, figures = export_onnx(right, GROUPS, X)
    assert figures["mismatches"] == 0 and figures["rows_checked"] == len(X) + 10_000
    with pytest.raises(ConfigError, match="parity gate failed"):
        export_onnx(right, GROUPS, X, converter=lambda pipe, features: convert(wrong, features))


def test_the_groups_export_joins_its_inputs_with_concat():
    import onnx

    from mallscore.groups.job import export_onnx
    from mallscore.specs import GROUPS

    X = planted_rows(PLANTED, per_group=40)
    onnx_bytes, figures = export_onnx(fit.make_pipeline(4).fit(X), GROUPS, X)

    ops = [n.op_type for n in onnx.load_from_string(onnx_bytes).graph.node]
    assert "Concat" in ops and "FeatureVectorizer" not in ops
    assert figures["mismatches"] == 0
