"""The model card as a scoring contract, and the SQL that enforces it.

A model card lists the model's input features by name, in order, with their
type, range and (for categories) allowed values; it also gives the decision
threshold and the segment tiers. This module turns a card into a checked
:class:`Contract` and builds the SQL that selects candidates, rejects rows that
break the contract (missing, non-finite, out-of-range, unknown category) with a
reason, and assigns segments. Pure: no connection, no file; identifiers that
reach SQL are checked against the warehouse catalog by the caller (see
:func:`check_columns`) and always quoted; every value is a bound parameter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mallscore.errors import ConfigError

SUPPORTED_TYPES = ("float32",)
FLOAT32_MAX = 3.4028234663852886e38
OBSERVED_SCORE_COLUMN = "spending_score"
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
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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


def quote(identifier: str) -> str:
    """Quote an identifier that was checked against the catalog."""
    return '"' + identifier.replace('"', '""') + '"'


def _number(value: Any, what: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"model card: {what} must be a finite number, got {value!r}")
    return float(value)


def contract_from_card(card: Mapping[str, Any]) -> Contract:
    """Check a model card and return the contract scoring enforces (ConfigError if unusable)."""
    where = f"model card {card.get('spec', '?')}/{card.get('version', '?')}"
    try:
        raw_features = card["features"]
        onnx = card["onnx"]
        tiers_raw = card["tiers"]
        threshold = _number(card["threshold"], "threshold")
        spec, version = str(card["spec"]), str(card["version"])
    except KeyError as exc:
        raise ConfigError(f"{where}: missing key {exc}; the card does not follow the model contract") from None
    if not isinstance(raw_features, list) or not raw_features:
        raise ConfigError(f"{where}: 'features' must be a non-empty list")
    features = []
    for i, item in enumerate(raw_features):
        if not isinstance(item, Mapping) or "name" not in item:
            raise ConfigError(f"{where}: features[{i}] must be an object with a name")
        name = str(item["name"])
        if not _IDENTIFIER.match(name):
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
            values = tuple(_number(v, f"feature {name!r} value") for v in values)
        lo = _number(item.get("min"), f"feature {name!r} min", allow_none=True)
        hi = _number(item.get("max"), f"feature {name!r} max", allow_none=True)
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"{where}: feature {name!r} has min {lo} above max {hi}")
        features.append(Feature(name, ftype, lo, hi, values))
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: a feature is listed twice ({names})")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"{where}: threshold {threshold} is not a probability")
    if not isinstance(tiers_raw, list) or not tiers_raw:
        raise ConfigError(f"{where}: 'tiers' must be a non-empty list, best first")
    tiers = []
    for i, item in enumerate(tiers_raw):
        try:
            tiers.append(
                Tier(
                    str(item["name"]),
                    _number(item["min_p"], f"tiers[{i}].min_p"),
                    _number(item["min_score"], f"tiers[{i}].min_score"),
                )
            )
        except (KeyError, TypeError):
            raise ConfigError(f"{where}: tiers[{i}] needs name, min_p and min_score") from None
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
    if not _IDENTIFIER.match(feature_table):
        raise ConfigError(f"{where}: feature_table {feature_table!r} is not a plain relation name")
    return Contract(spec, version, feature_table, tuple(features), inputs, probability_output, threshold, tuple(tiers))


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


# --- SQL -------------------------------------------------------------------------------


def contract_params(contract: Contract) -> dict[str, Any]:
    """Bound parameters used by :func:`validation_sql` and :func:`segment_sql`."""
    params: dict[str, Any] = {"threshold": contract.threshold, "float32_max": FLOAT32_MAX}
    for i, f in enumerate(contract.features):
        params[f"f{i}_name"] = f.name
        if f.min is not None:
            params[f"f{i}_min"] = f.min
        if f.max is not None:
            params[f"f{i}_max"] = f.max
        if f.values is not None:
            params[f"f{i}_values"] = list(f.values)
            params[f"f{i}_values_text"] = ", ".join(f"{v:g}" for v in f.values)
    for i, t in enumerate(contract.tiers):
        params[f"t{i}_name"] = t.name
        params[f"t{i}_p"] = t.min_p
        params[f"t{i}_score"] = t.min_score
    return params


def _range_text(f: Feature, i: int) -> str:
    lo = f"cast($f{i}_min as varchar)" if f.min is not None else "'-inf'"
    hi = f"cast($f{i}_max as varchar)" if f.max is not None else "'inf'"
    return f"{lo} || '..' || {hi}"


def feature_column(i: int) -> str:
    """The internal name of the card's i-th feature in the scoring queries (never collides with a feature name)."""
    return f"__feature_{i}"


def validation_sql(contract: Contract, columns: Sequence[str] | None = None) -> str:
    """A SQL expression: NULL when a row meets the contract, else the first failing rule's reason.

    ``columns`` names the features' columns (default: the feature names).
    """
    whens = []
    for i, f in enumerate(contract.features):
        col, name = quote(columns[i] if columns else f.name), f"$f{i}_name"
        whens.append(f"when {col} is null then {name} || ' is missing'")
        whens.append(
            f"when not isfinite({col}) or abs({col}) > $float32_max "
            f"then {name} || ' ' || cast({col} as varchar) || ' is not a finite float32'"
        )
        if f.min is not None:
            whens.append(
                f"when {col} < $f{i}_min then {name} || ' ' || cast({col} as varchar) "
                f"|| ' is below the model''s range ' || {_range_text(f, i)}"
            )
        if f.max is not None:
            whens.append(
                f"when {col} > $f{i}_max then {name} || ' ' || cast({col} as varchar) "
                f"|| ' is above the model''s range ' || {_range_text(f, i)}"
            )
        if f.values is not None:
            whens.append(
                f"when not list_contains($f{i}_values, {col}) then {name} || ' ' || cast({col} as varchar) "
                f"|| ' is not a known category (' || $f{i}_values_text || ')'"
            )
    return "case\n        " + "\n        ".join(whens) + "\n    end"


def segment_sql(contract: Contract, p: str = "p", score: str = "observed_score") -> str:
    """A SQL expression: the tier of a row, observed from its score if known, else predicted from ``p``."""
    observed = " ".join(f"when {score} >= $t{i}_score then $t{i}_name" for i in range(len(contract.tiers)))
    predicted = " ".join(f"when {p} >= $t{i}_p then $t{i}_name" for i in range(len(contract.tiers)))
    last = f"$t{len(contract.tiers) - 1}_name"
    return (
        f"case when {score} is not null then (case {observed} else {last} end) "
        f"else (case {predicted} else {last} end) end"
    )


def basis_sql(score: str = "observed_score") -> str:
    """A SQL expression: 'observed' where the spending score is known, else 'predicted'."""
    return f"case when {score} is not null then 'observed' else 'predicted' end"


def candidates_sql(
    contract: Contract, *, mode: str, has_score: bool, scored: bool = True, rejected: bool = True
) -> str:
    """CTEs ending in ``candidates``: the customers a run of ``mode`` scores, features cast to double.

    nightly: never scored, changed since last scored (``updated_at``), or last
    scored by another model, unless this model already rejected the customer's
    current data; all: everyone; adhoc: the ids bound as ``$ids``. Needs the
    parameters ``$model_version`` (and ``$ids`` for adhoc). ``scored=False``
    (no segments yet) and ``rejected=False`` (no rejection by this model yet)
    leave out joins that cannot match: a join, even with an empty side, made
    the streamed query's memory grow with the number of customers.
    """
    if mode not in MODES:
        raise ValueError(f"unknown scoring mode {mode!r}")
    score = quote(OBSERVED_SCORE_COLUMN) if has_score else "null"
    feature_cols = ",\n        ".join(
        f"cast({quote(f.name)} as double) as {quote(feature_column(i))}" for i, f in enumerate(contract.features)
    )
    joins, conditions = [], []
    if mode == "nightly" and scored:
        joins.append("left join current_segments using (customer_id)")
        conditions.append(
            "(current_segments.customer_id is null\n"
            "        or features.updated_at is distinct from current_segments.customer_updated_at\n"
            "        or current_segments.model_version <> $model_version)"
        )
    if mode == "nightly" and rejected:
        joins.append("left join already_rejected using (customer_id)")
        conditions.append(
            "(already_rejected.customer_id is null or already_rejected.rejected_at < features.updated_at)"
        )
    if mode == "adhoc":
        conditions.append("list_contains($ids, features.customer_id)")
    join_text = "\n    ".join(joins)
    where = "\n        and ".join(conditions) or "true"
    return f"""
with features as (
    select
        customer_id,
        updated_at,
        cast({score} as double) as observed_score,
        {feature_cols}
    from {quote(contract.feature_table)}
),

current_segments as (
    select customer_id, model_version, customer_updated_at from segments
),

already_rejected as (
    select try_cast(rejected_rows.customer_id as bigint) as customer_id, max(rejected_rows.rejected_at) as rejected_at
    from rejected_rows
    inner join scoring_runs using (run_id)
    where scoring_runs.model_version = $model_version and scoring_runs.status = 'succeeded'
    group by 1
),

candidates as (
    select features.*
    from features
    {join_text}
    where {where}
)
"""


def scoring_input_sql(
    contract: Contract, *, mode: str, has_score: bool, scored: bool = True, rejected: bool = True
) -> str:
    """The streamed query: every candidate with its rejection reason; features as float32 only when valid."""
    return (
        scoring_input_ctes(contract, mode=mode, has_score=has_score, scored=scored, rejected=rejected)
        + """

select * from final
"""
    )


def scoring_input_ctes(
    contract: Contract, *, mode: str, has_score: bool, scored: bool = True, rejected: bool = True
) -> str:
    """The CTEs of :func:`scoring_input_sql`, ending in ``final`` (for statements that read it twice or in-engine)."""
    cols = [quote(feature_column(i)) for i in range(len(contract.features))]
    raw = ", ".join(f"{quote(f.name)} := cast({c} as varchar)" for f, c in zip(contract.features, cols))
    floats = ",\n        ".join(f"case when reason is null then cast({c} as float) end as {c}" for c in cols)
    return (
        candidates_sql(contract, mode=mode, has_score=has_score, scored=scored, rejected=rejected)
        + f""",

checked as (
    select *, {validation_sql(contract, [feature_column(i) for i in range(len(contract.features))])} as reason
    from candidates
),

final as (
    select
        customer_id,
        updated_at,
        observed_score,
        reason,
        case when reason is not null then to_json(struct_pack({raw})) end as raw_values,
        {floats}
    from checked
)"""
    )


def segment_insert_sql(contract: Contract, source: str, ctes: str = "", p: str = "p") -> str:
    """INSERT the scored rows of ``source`` (customer_id, updated_at, observed_score, ``p``) into ``segments``.

    ``ctes`` (``with ...``, no trailing comma) defines relations ``source`` may
    be one of, for a statement that scores in the engine.
    """
    head = ctes.rstrip() + ",\n\n" if ctes else "with "
    return f"""
insert into segments
    (customer_id, segment, p_high_spender, predicted_high_spender, basis, model_version, run_id, scored_at, customer_updated_at)
{head}scored as (
    select customer_id, updated_at, observed_score, cast({quote(p)} as double) as p from {quote(source)}
)
select
    customer_id,
    {segment_sql(contract)},
    p,
    p >= $threshold,
    {basis_sql()},
    $model_version,
    $run_id,
    $scored_at,
    updated_at
from scored
"""


def bound(sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``params`` that ``sql`` uses (DuckDB refuses unused named parameters)."""
    return {k: v for k, v in params.items() if re.search(r"\$" + re.escape(k) + r"\b", sql)}


def describe_ids(ids: Sequence[int]) -> str:
    """A short human list of ids for messages."""
    shown = ", ".join(str(i) for i in list(ids)[:10])
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
