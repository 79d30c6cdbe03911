"""The model card as a scoring contract, and the rules it implies, rendered to SQL once.

A model card lists the model's input features by name, in order, with their
type, range and (for categories) allowed values; it also gives the decision
threshold and the segment tiers. :func:`contract_from_card` is the one parser
of a card for every command that scores (``score``, ``rescore``,
``export-sql``); it returns a checked :class:`Contract`.

The rules a contract implies are written here once and rendered to SQL for
every place that applies them:

* the quarantine rules (:func:`quarantine_rules`): a feature missing, not a
  finite float32, outside the card's range or not a known category, checked in
  that order; :func:`reason_sql` gives the first broken rule's reason (the
  nightly job), :func:`passes_sql` the same rules as a filter (``export-sql``);
* the tier rule (:func:`segment_sql`): a customer whose spending score is known
  gets the first tier (best first) whose ``min_score`` it reaches, any other
  the first whose ``min_p`` its probability reaches; the last tier catches all;
* the label rule: ``predicted_high_spender = p >= threshold``.

How a card's values reach the SQL is the renderer's choice (:class:`Params`:
bound ``$name`` parameters; :class:`Variables`: DuckDB session variables set
with bound parameters, for the job's temporary views and macros;
:class:`Literals`: exact constants, for SQL that leaves mallscore). Pure: no
connection, no file; identifiers are checked as plain names and quoted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mallscore.errors import ConfigError
from mallscore.sqlvalues import Literals, Params, Variables, literal, quote, set_variables

__all__ = ["Literals", "Params", "Variables", "literal", "quote", "set_variables"]  # re-exported

SUPPORTED_TYPES = ("float32",)
FLOAT32_MAX = 3.4028234663852886e38
OBSERVED_SCORE_COLUMN = "spending_score"
SCORE_MAX = 100.0  # the mall's spending score runs from 1 to 100
REQUIRED_COLUMNS = ("customer_id", "updated_at")
MODES = ("nightly", "all", "adhoc")
_NUMERIC_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "DOUBLE",
    "BOOLEAN",
}
PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Feature:
    """One model input: a warehouse column of the feature table, fed as float32."""

    name: str
    type: str
    min: float | None
    max: float | None
    values: tuple[float, ...] | None


@dataclass(frozen=True)
class Tier:
    """A segment: predicted when ``p >= min_p``, observed when ``spending_score >= min_score``."""

    name: str
    min_p: float
    min_score: float


@dataclass(frozen=True)
class Contract:
    """What scoring needs from a model card, checked."""

    spec: str
    version: str
    feature_table: str
    features: tuple[Feature, ...]
    inputs: tuple[str, ...]
    probability_output: str
    threshold: float
    tiers: tuple[Tier, ...]

    @property
    def feature_names(self) -> list[str]:
        """Feature names in the card's order."""
        return [f.name for f in self.features]


def card_number(value: Any, what: str, *, allow_none: bool = False) -> float | None:
    """A number from a model card: finite and not a boolean (ConfigError otherwise)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"model card: {what} must be a finite number, got {value!r}")
    return float(value)


def features_from_card(raw_features: Any, where: str) -> tuple[Feature, ...]:
    """A card's ``features`` list, checked: plain unique names, supported types, finite bounds and values.

    The one reading of a card's features, for the classifier's contract and the groups' alike.
    """
    if not isinstance(raw_features, list) or not raw_features:
        raise ConfigError(f"{where}: 'features' must be a non-empty list")
    features = []
    for i, item in enumerate(raw_features):
        if not isinstance(item, Mapping) or "name" not in item:
            raise ConfigError(f"{where}: features[{i}] must be an object with a name")
        name = str(item["name"])
        if not PLAIN_NAME.match(name):
            raise ConfigError(f"{where}: feature name {name!r} is not a plain column name")
        ftype = item.get("type", "float32")
        if ftype not in SUPPORTED_TYPES:
            raise ConfigError(
                f"{where}: feature {name!r} has type {ftype!r}; scoring supports {', '.join(SUPPORTED_TYPES)}"
            )
        values = item.get("values")
        if values is not None:
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}: feature {name!r} 'values' must be a non-empty list or null")
            values = tuple(card_number(v, f"feature {name!r} value") for v in values)
        lo = card_number(item.get("min"), f"feature {name!r} min", allow_none=True)
        hi = card_number(item.get("max"), f"feature {name!r} max", allow_none=True)
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"{where}: feature {name!r} has min {lo} above max {hi}")
        features.append(Feature(name, ftype, lo, hi, values))
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: a feature is listed twice ({names})")
    return tuple(features)


def contract_from_card(card: Mapping[str, Any]) -> Contract:
    """Check a model card and return the contract scoring enforces (ConfigError if unusable)."""
    where = f"model card {card.get('spec', '?')}/{card.get('version', '?')}"
    try:
        raw_features = card["features"]
        onnx = card["onnx"]
        tiers_raw = card["tiers"]
        threshold = card_number(card["threshold"], "threshold")
        spec, version = str(card["spec"]), str(card["version"])
    except KeyError as exc:
        raise ConfigError(f"{where}: missing key {exc}; the card does not follow the model contract") from None
    features = features_from_card(raw_features, where)
    names = [f.name for f in features]
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"{where}: threshold {threshold} is not a probability strictly between 0 and 1")
    if not isinstance(tiers_raw, list) or not tiers_raw:
        raise ConfigError(f"{where}: 'tiers' must be a non-empty list, best first")
    tiers = []
    for i, item in enumerate(tiers_raw):
        try:
            tiers.append(
                Tier(
                    str(item["name"]),
                    card_number(item["min_p"], f"tiers[{i}].min_p"),
                    card_number(item["min_score"], f"tiers[{i}].min_score"),
                )
            )
        except (KeyError, TypeError):
            raise ConfigError(f"{where}: tiers[{i}] needs name, min_p and min_score") from None
        if not isinstance(item["name"], str) or not item["name"].strip():
            raise ConfigError(f"{where}: tiers[{i}] has an empty name")
    for t in tiers:  # reachable: some probability, and some score on the mall's 1-100 scale, reaches it
        if not 0.0 <= t.min_p <= 1.0 or t.min_score > SCORE_MAX:
            raise ConfigError(
                f"{where}: tier {t.name!r} (min_p {t.min_p}, min_score {t.min_score}) is unreachable: "
                f"min_p must be a probability and min_score at most {SCORE_MAX:g}"
            )
    if len({t.name for t in tiers}) != len(tiers):
        raise ConfigError(f"{where}: tier names must be unique ({[t.name for t in tiers]})")
    if any(a.min_p < b.min_p or a.min_score < b.min_score for a, b in zip(tiers, tiers[1:])):
        raise ConfigError(f"{where}: tiers must be ordered best first (min_p and min_score not increasing)")
    if tiers[-1].min_p > 0.0 or tiers[-1].min_score > 1.0:
        raise ConfigError(
            f"{where}: the last tier ({tiers[-1].name!r}) must catch every customer (min_p 0, min_score at most 1)"
        )
    try:
        inputs = tuple(str(i["name"]) if isinstance(i, Mapping) else str(i) for i in onnx.get("inputs", names))
        probability_output = str(onnx["probability_output"])
    except (KeyError, TypeError, AttributeError):
        raise ConfigError(f"{where}: 'onnx' must give 'inputs' and 'probability_output'") from None
    if list(inputs) != names:
        raise ConfigError(
            f"{where}: ONNX inputs {list(inputs)} do not match the features {names} one for one, in order"
        )
    feature_table = str(card.get("feature_table", "features_customer"))
    if not PLAIN_NAME.match(feature_table):
        raise ConfigError(f"{where}: feature_table {feature_table!r} is not a plain relation name")
    return Contract(spec, version, feature_table, features, inputs, probability_output, threshold, tuple(tiers))


def check_columns(contract: Contract, columns: Mapping[str, str]) -> bool:
    """Check the feature table's ``{column: type}`` against the contract; True if it has a spending score.

    Raises ConfigError (exit 78) naming the first column the card needs that
    the warehouse lacks or holds as a non-numeric type: the model and the
    warehouse do not fit each other (promote a model that fits, or rebuild the
    features); no input file is at fault and a retry cannot help.
    """
    if not columns:
        raise ConfigError(
            f"the warehouse has no relation {contract.feature_table!r}, which model {contract.version} reads its "
            "features from; run `mallscore features` to build it"
        )
    for name in REQUIRED_COLUMNS:
        if name not in columns:
            raise ConfigError(f"{contract.feature_table} has no column {name!r}, which scoring needs")
    for feature in contract.features:
        if feature.name not in columns:
            raise ConfigError(
                f"{contract.feature_table} has no column {feature.name!r}, which model {contract.version} needs "
                f"(card features: {', '.join(contract.feature_names)}); nothing was scored"
            )
        ctype = columns[feature.name].upper()
        if ctype not in _NUMERIC_TYPES and not ctype.startswith("DECIMAL"):
            raise ConfigError(
                f"{contract.feature_table}.{feature.name} is {ctype}, but model {contract.version} needs a number "
                f"({feature.type}); nothing was scored"
            )
    return OBSERVED_SCORE_COLUMN in columns


# --- the quarantine rules ------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One quarantine rule on the card's ``feature``-th feature; ``kind`` says which."""

    feature: int
    kind: str  # missing | not_finite | below | above | unknown_category


def quarantine_rules(contract: Contract) -> list[Rule]:
    """The card's quarantine rules, in the order they are checked (the first broken one is the reason)."""
    rules = []
    for i, f in enumerate(contract.features):
        rules += [Rule(i, "missing"), Rule(i, "not_finite")]
        if f.min is not None:
            rules.append(Rule(i, "below"))
        if f.max is not None:
            rules.append(Rule(i, "above"))
        if f.values is not None:
            rules.append(Rule(i, "unknown_category"))
    return rules


def _broken(rule: Rule, f: Feature, col: str, v: Params) -> str:
    """SQL true when ``rule`` is broken (NULL was ruled out by the rule before it)."""
    i = rule.feature
    if rule.kind == "missing":
        return f"{col} is null"
    if rule.kind == "not_finite":  # NaN compares above every number in DuckDB, PostgreSQL and Spark
        return f"not (abs({col}) <= {v.number('float32_max', FLOAT32_MAX)})"
    if rule.kind == "below":
        return f"{col} < {v.number(f'f{i}_min', f.min)}"
    if rule.kind == "above":
        return f"{col} > {v.number(f'f{i}_max', f.max)}"
    return f"not ({v.is_one_of(col, f'f{i}_values', f.values or ())})"


def _reason(rule: Rule, f: Feature, col: str, v: Params) -> str:
    """SQL text saying why ``rule`` rejected the row."""
    i = rule.feature
    name, value = v.text(f"f{i}_name", f.name), v.as_text(col)
    if rule.kind == "missing":
        return f"{name} || ' is missing'"
    if rule.kind == "not_finite":
        return f"{name} || ' ' || {value} || ' is not a finite float32'"
    if rule.kind in ("below", "above"):
        lo = v.as_text(v.number(f"f{i}_min", f.min)) if f.min is not None else "'-inf'"
        hi = v.as_text(v.number(f"f{i}_max", f.max)) if f.max is not None else "'inf'"
        outside = v.text(f"{rule.kind}_text", f" is {rule.kind} the model's range ")  # each engine escapes the '
        return f"{name} || ' ' || {value} || {outside} || {lo} || '..' || {hi}"
    listed = v.text(f"f{i}_values_text", ", ".join(f"{x:g}" for x in f.values or ()))
    return f"{name} || ' ' || {value} || ' is not a known category (' || {listed} || ')'"


def reason_sql(contract: Contract, values: Params, columns: Sequence[str] | None = None) -> str:
    """A SQL expression: NULL when a row meets the contract, else the first broken rule's reason.

    ``columns`` names the features' columns (default: the feature names).
    """
    cols = [values.quote(c) for c in (columns or contract.feature_names)]
    whens = [
        f"when {_broken(r, contract.features[r.feature], cols[r.feature], values)} "
        f"then {_reason(r, contract.features[r.feature], cols[r.feature], values)}"
        for r in quarantine_rules(contract)
    ]
    return "case\n        " + "\n        ".join(whens) + "\n    end"


def passes_sql(contract: Contract, values: Params, columns: Sequence[str] | None = None) -> str:
    """A SQL condition: true exactly when :func:`reason_sql` is NULL (the rows the job would score)."""
    cols = [values.quote(c) for c in (columns or contract.feature_names)]
    return "\n        and ".join(
        f"not ({_broken(r, contract.features[r.feature], cols[r.feature], values)})" for r in quarantine_rules(contract)
    )


# --- the tier and label rules ------------------------------------------------------------


def segment_sql(contract: Contract, values: Params | None = None, p: str = "p", score: str = "observed_score") -> str:
    """A SQL expression: the tier of a row, observed from its score if known, else predicted from ``p``.

    ``values`` renders the card's values (default :class:`Params`, bound with :func:`contract_params`).
    """
    values = values if values is not None else Params()
    observed = " ".join(
        f"when {score} >= {values.number(f't{i}_score', t.min_score)} then {values.text(f't{i}_name', t.name)}"
        for i, t in enumerate(contract.tiers)
    )
    predicted = " ".join(
        f"when {p} >= {values.number(f't{i}_p', t.min_p)} then {values.text(f't{i}_name', t.name)}"
        for i, t in enumerate(contract.tiers)
    )
    last = values.text(f"t{len(contract.tiers) - 1}_name", contract.tiers[-1].name)
    return (
        f"case when {score} is not null then (case {observed} else {last} end) "
        f"else (case {predicted} else {last} end) end"
    )


BASES = ("observed", "predicted")  # segments.basis: the spending score was known, or the model predicted


def basis_sql(score: str = "observed_score") -> str:
    """A SQL expression: 'observed' where the spending score is known, else 'predicted'."""
    return f"case when {score} is not null then '{BASES[0]}' else '{BASES[1]}' end"


def predicted_sql(contract: Contract, values: Params, p: str = "p") -> str:
    """A SQL condition: the model predicts a high spender (``p >= threshold``)."""
    return f"{p} >= {values.number('threshold', contract.threshold)}"


def contract_params(contract: Contract) -> dict[str, Any]:
    """Every named parameter the :class:`Params` rendering of the contract's rules binds."""
    params = Params()
    reason_sql(contract, params)
    segment_sql(contract, params)
    predicted_sql(contract, params)
    return params.values


def feature_column(i: int) -> str:
    """The internal name of the card's i-th feature in the scoring queries (never collides with a feature name)."""
    return f"__feature_{i}"


def bound(sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``params`` that ``sql`` uses (DuckDB refuses unused named parameters)."""
    return {k: v for k, v in params.items() if re.search(r"\$" + re.escape(k) + r"\b", sql)}


def describe_ids(ids: Sequence[int]) -> str:
    """A short human list of ids for messages."""
    shown = ", ".join(str(i) for i in list(ids)[:10])
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
