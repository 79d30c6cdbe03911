"""The model card as a contract: card checks, column checks, and the SQL rules on a real DuckDB."""

from __future__ import annotations

import copy
import math

import duckdb
import pytest

from mallscore.contract import (
    Contract,
    Literals,
    Params,
    Variables,
    bound,
    check_columns,
    contract_from_card,
    contract_params,
    passes_sql,
    reason_sql,
    segment_sql,
    set_variables,
)
from mallscore.errors import ConfigError

CARD = {
    "spec": "default",
    "version": "v1",
    "feature_table": "features_customer",
    "features": [
        {"name": "age", "type": "float32", "min": 18, "max": 70, "values": None},
        {"name": "annual_income", "type": "float32", "min": 15, "max": 140, "values": None},
        {"name": "gender_female", "type": "float32", "min": 0, "max": 1, "values": [0, 1]},
    ],
    "onnx": {
        "file": "model.onnx",
        "sha256": "0" * 64,
        "inputs": [
            {"name": n, "type": "float32", "shape": [None, 1]} for n in ("age", "annual_income", "gender_female")
        ],
        "probability_output": "probabilities",
    },
    "threshold": 0.5,
    "tiers": [
        {"name": "top", "min_p": 0.7, "min_score": 75},
        {"name": "high", "min_p": 0.5, "min_score": 51},
        {"name": "low", "min_p": 0.0, "min_score": 0},
    ],
}


def card_with(**changes) -> dict:
    card = copy.deepcopy(CARD)
    card.update(changes)
    return card


def test_a_valid_card_gives_the_ordered_contract() -> None:
    contract = contract_from_card(CARD)
    assert contract.feature_names == ["age", "annual_income", "gender_female"]
    assert contract.features[2].values == (0.0, 1.0)
    assert contract.probability_output == "probabilities"
    assert [t.name for t in contract.tiers] == ["top", "high", "low"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"features": []}, "non-empty list"),
        ({"threshold": 1.5}, "not a probability"),
        ({"threshold": float("nan")}, "finite number"),
        ({"tiers": [{"name": "top", "min_p": 0.7, "min_score": 75}]}, "must catch every customer"),
        (
            {"tiers": [{"name": "low", "min_p": 0.0, "min_score": 0}, {"name": "top", "min_p": 0.7, "min_score": 75}]},
            "best first",
        ),
        ({"feature_table": "features; drop table segments"}, "plain relation name"),
    ],
)
def test_unusable_cards_are_refused_with_a_reason(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        contract_from_card(card_with(**change))


def test_feature_names_types_and_onnx_inputs_are_checked() -> None:
    bad_name = card_with(features=[{"name": 'age" or 1=1 --', "type": "float32"}])
    with pytest.raises(ConfigError, match="plain column name"):
        contract_from_card(bad_name)
    wrong_type = copy.deepcopy(CARD)
    wrong_type["features"][0]["type"] = "string"
    with pytest.raises(ConfigError, match="type 'string'"):
        contract_from_card(wrong_type)
    reordered = copy.deepcopy(CARD)
    reordered["onnx"]["inputs"] = list(reversed(reordered["onnx"]["inputs"]))
    with pytest.raises(ConfigError, match="do not match the features"):
        contract_from_card(reordered)
    missing = copy.deepcopy(CARD)
    del missing["tiers"]
    with pytest.raises(ConfigError, match="missing key 'tiers'"):
        contract_from_card(missing)


def test_check_columns_names_the_missing_or_non_numeric_column() -> None:
    contract = contract_from_card(CARD)
    columns = {
        "customer_id": "BIGINT",
        "age": "DOUBLE",
        "annual_income": "DOUBLE",
        "gender_female": "DECIMAL(2,1)",
        "updated_at": "TIMESTAMP",
    }
    assert check_columns(contract, columns) is False
    assert check_columns(contract, {**columns, "spending_score": "DOUBLE"}) is True
    without = {k: v for k, v in columns.items() if k != "annual_income"}
    with pytest.raises(ConfigError, match="no column 'annual_income'"):
        check_columns(contract, without)
    with pytest.raises(ConfigError, match="age is VARCHAR"):
        check_columns(contract, {**columns, "age": "VARCHAR"})
    with pytest.raises(ConfigError, match="no relation 'features_customer'"):
        check_columns(contract, {})


def _reasons(contract: Contract, rows: list[tuple]) -> list[str | None]:
    con = duckdb.connect()
    try:
        con.execute("create table candidates (age double, annual_income double, gender_female double)")
        con.executemany("insert into candidates values (?, ?, ?)", rows)
        sql = f"select {reason_sql(contract, Params())} from candidates"
        return [r[0] for r in con.execute(sql, bound(sql, contract_params(contract))).fetchall()]
    finally:
        con.close()


def test_validation_gives_the_first_failing_rule_as_reason() -> None:
    contract = contract_from_card(CARD)
    reasons = _reasons(
        contract,
        [
            (30, 50, 1),
            (None, 50, 1),
            (math.nan, 50, 1),
            (30, math.inf, 0),
            (30, 1e39, 0),
            (90, 50, 0),
            (17.5, 50, 0),
            (30, 500, 0),
            (30, 50, 0.5),
            (18, 140, 0),
        ],
    )
    assert reasons[0] is None and reasons[-1] is None  # range ends are inside the range
    assert reasons[1] == "age is missing"
    assert reasons[2].startswith("age ") and "not a finite float32" in reasons[2]
    assert "annual_income" in reasons[3] and "not a finite float32" in reasons[3]
    assert "not a finite float32" in reasons[4]
    assert reasons[5] == "age 90.0 is above the model's range 18.0..70.0"
    assert reasons[6] == "age 17.5 is below the model's range 18.0..70.0"
    assert reasons[7].startswith("annual_income 500.0 is above")
    assert reasons[8] == "gender_female 0.5 is not a known category (0, 1)"


def test_features_without_a_range_only_need_a_finite_value() -> None:
    card = copy.deepcopy(CARD)
    card["features"][1].update(min=None, max=None)
    reasons = _reasons(contract_from_card(card), [(30, 1e9, 1), (30, -1e9, 0), (30, math.nan, 0)])
    assert reasons[:2] == [None, None]
    assert "not a finite float32" in reasons[2]


def test_segment_rules_observed_score_first_then_probability() -> None:
    contract = contract_from_card(CARD)
    con = duckdb.connect()
    rows = [
        # (p, spending_score) -> expected tier
        (0.95, 20.0, "low"),  # observed: the score decides, even against the model
        (0.10, 75.0, "top"),  # observed boundary: min_score is inclusive
        (0.10, 74.0, "high"),
        (0.10, 51.0, "high"),
        (0.10, 50.0, "low"),
        (0.70, None, "top"),  # predicted boundary: min_p is inclusive
        (0.6999, None, "high"),
        (0.50, None, "high"),
        (0.4999, None, "low"),
        (0.0, None, "low"),
    ]
    try:
        sql = (
            "select " + segment_sql(contract, Params(), p="p", score="s") + " from (select unnest($p) as p, "
            "cast(unnest($s) as double) as s)"
        )
        params = {**contract_params(contract), "p": [r[0] for r in rows], "s": [r[1] for r in rows]}
        got = [r[0] for r in con.execute(sql, bound(sql, params)).fetchall()]
    finally:
        con.close()
    assert got == [r[2] for r in rows]


ROWS = [
    (30, 50, 1),
    (None, 50, 1),
    (math.nan, 50, 1),
    (30, math.inf, 0),
    (30, -math.inf, 0),
    (30, 1e39, 0),
    (90, 50, 0),
    (17.5, 50, 0),
    (30, 500, 0),
    (30, 50, 0.5),
    (18, 140, 0),
    (70, 15, 1),
]


def test_one_rule_set_every_rendering_agrees() -> None:
    """The job's reasons (parameters, session variables) and export-sql's filter (literals) admit the same rows."""
    contract = contract_from_card(CARD)
    con = duckdb.connect()
    try:
        con.execute("create table candidates (age double, annual_income double, gender_female double)")
        con.executemany("insert into candidates values (?, ?, ?)", ROWS)
        by_params = f"select {reason_sql(contract, Params())} is null from candidates order by rowid"
        admitted = [r[0] for r in con.execute(by_params, bound(by_params, contract_params(contract))).fetchall()]
        variables = Variables()
        by_variables = f"select {reason_sql(contract, variables)} is null from candidates order by rowid"
        set_variables(con, variables)
        assert [r[0] for r in con.execute(by_variables).fetchall()] == admitted
        filtered = f"select {passes_sql(contract, Literals())} from candidates order by rowid"
        assert [bool(r[0]) for r in con.execute(filtered).fetchall()] == admitted
        assert admitted == [True] + [False] * 9 + [True, True]
    finally:
        con.close()


def test_tier_rule_renders_the_same_with_literals_and_variables() -> None:
    contract = contract_from_card(CARD)
    cases = [(p / 20, s) for p in range(21) for s in (None, 1.0, 50.0, 51.0, 74.0, 75.0, 100.0)]
    con = duckdb.connect()
    try:
        con.execute("create table t (p double, s double)")
        con.executemany("insert into t values (?, ?)", cases)
        variables = Variables()
        with_variables = f"select {segment_sql(contract, variables, 'p', 's')} from t order by rowid"
        set_variables(con, variables)
        with_literals = f"select {segment_sql(contract, Literals(), 'p', 's')} from t order by rowid"
        assert con.execute(with_variables).fetchall() == con.execute(with_literals).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ([{"name": "", "min_p": 0.0, "min_score": 0}], "empty name"),
        (
            [{"name": "a", "min_p": 0.5, "min_score": 50}, {"name": "a", "min_p": 0.0, "min_score": 0}],
            "unique",
        ),
    ],
)
def test_tier_names_must_be_non_empty_and_unique(tiers, message) -> None:
    with pytest.raises(ConfigError, match=message):
        contract_from_card(card_with(tiers=tiers))


def test_a_card_value_never_becomes_sql_text() -> None:
    card = copy.deepcopy(CARD)
    card["tiers"][0]["name"] = "top'; drop table segments; --"
    contract = contract_from_card(card)
    variables = Variables()
    sql = segment_sql(contract, variables)
    assert "drop table" not in sql and variables.values["t0_name"] == card["tiers"][0]["name"]
    quoted = segment_sql(contract, Literals())
    assert "'top''; drop table segments; --'" in quoted
