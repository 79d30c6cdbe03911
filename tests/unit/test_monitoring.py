"""The reference distributions: built from training rows, checked when a card is read, drawn in the report."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from mallscore.contract import contract_from_card
from mallscore.errors import ConfigError
from mallscore.monitoring import build_reference, reference_from_card

FEATURES = [{"name": "age", "values": None}, {"name": "gender_female", "values": [0.0, 1.0]}]


def _card() -> dict:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.integers(18, 71, 1000), rng.random(1000) < 0.3])
    card = {
        "spec": "default",
        "version": "v1",
        "features": [{"name": f["name"], "type": "float32", "values": f["values"]} for f in FEATURES],
        "onnx": {"inputs": ["age", "gender_female"], "probability_output": "probabilities"},
        "threshold": 0.5,
        "tiers": [{"name": "all", "min_p": 0.0, "min_score": 1}],
    }
    card["reference"] = build_reference(card["features"], x, rng.random(1000))
    return card


def test_the_reference_holds_deciles_category_shares_means_and_words():
    reference = _card()["reference"]
    age, gender = reference["features"]
    assert len(age["edges"]) == 9 and age["edges"] == sorted(age["edges"]) and len(age["shares"]) == 10
    assert all(0.05 < s < 0.15 for s in age["shares"]) and abs(sum(age["shares"]) - 1) < 1e-12
    assert (age["above"], age["below"]) == ("older than most customers", "younger than most customers")
    assert gender["values"] == [0.0, 1.0] and gender["value_words"] == ["male", "female"]
    assert abs(gender["shares"][1] - gender["mean"]) < 1e-12 and 0.25 < gender["mean"] < 0.35
    assert reference["rows"] == 1000 and len(reference["score"]["shares"]) == 10


def test_a_card_without_a_reference_has_none_and_a_malformed_one_is_refused():
    card = _card()
    contract = contract_from_card(card)
    parsed = reference_from_card(card, contract)
    assert [b.name for b in parsed.features] == ["age", "gender_female"] and parsed.score.edges
    assert reference_from_card({k: v for k, v in card.items() if k != "reference"}, contract) is None
    breakages = [
        lambda r: r["features"].reverse(),  # not the card's order
        lambda r: r["features"][0]["shares"].__setitem__(0, 0.5),  # shares no longer add up to 1
        lambda r: r["features"][0]["edges"].reverse(),  # edges must increase
        lambda r: r["features"][1].__setitem__("values", [1.0, 0.0]),  # not the card's values
        lambda r: r["features"][0].pop("mean"),
        lambda r: r["features"][0].__setitem__("above", ""),
        lambda r: r["score"].__setitem__("edges", "x"),
    ]
    for breakage in breakages:
        broken = copy.deepcopy(card)
        breakage(broken["reference"])
        with pytest.raises(ConfigError):
            reference_from_card(broken, contract)


def test_the_report_shows_the_reference_distributions():
    from mallscore.training.report_parts import reference_section

    html = reference_section(_card())
    assert "Reference distributions" in html and html.count("<table>") == 3
    assert "<td>female</td>" in html and "[-inf," in html and "+inf)" in html
    assert reference_section({"reference": None}) == ""


def test_streamed_bin_counts_compare_float32_values_with_double_edges_exactly():
    """Counting in float32 (edges rounded up to the next float32) gives the double comparison's counts, on edges
    that no float32 equals and on values one float32 step either side of every edge."""
    from mallscore.monitoring import BinCounts, Bins, Reference

    edges = (1e-45, 0.1, 23.000000001, 38.5, 3.5e38)
    values = (0.0, 1.0, 0.30000000000000004)  # the last one: a category no float32 equals
    with np.errstate(over="ignore"):
        near = [np.float32(e) for e in edges]
    near += [np.nextafter(v, np.float32(np.inf)) for v in near] + [np.nextafter(v, np.float32(-np.inf)) for v in near]
    x = np.array([*near, -3.4e38, 0.0, 1.0, np.float32(0.3)], dtype=np.float32)
    numeric = Bins("x", tuple([1 / 6] * 6), edges=edges)
    category = Bins("c", (0.4, 0.3, 0.3), values=values)
    counts = BinCounts(Reference((numeric, category), numeric))
    counts.add([x, x], x)
    wide = x.astype(np.float64)
    expected = np.bincount([sum(v >= e for e in edges) for v in wide], minlength=6)
    assert counts.counts[0].tolist() == counts.counts[2].tolist() == expected.tolist()
    assert counts.counts[1].tolist() == [int((wide == v).sum()) for v in values]
    assert counts.counts[1][0] > 0 and counts.counts[1][2] == 0  # float32(0.3) is not the double 0.3...
