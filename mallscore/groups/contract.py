"""The groups card as a contract, and the two rules it implies rendered to SQL.

* which rows get a group (:func:`eligible_sql`): the spending score is observed and every group
  feature passes the card's quarantine rules (present, a finite float32, within its range: the
  rules of :mod:`mallscore.contract`); any other row's group is NULL, never a guess;
* which group (:func:`nearest_sql`): the argmin of squared distances to the centres in the
  card's scaled space, the first centre on a tie (as the ONNX graph's ArgMin), as the group name.

Standard library only: the scoring path and ``export-sql`` import it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mallscore.contract import PLAIN_NAME, Contract, Feature, Params, card_number, features_from_card, passes_sql
from mallscore.errors import ConfigError
from mallscore.groups import KIND

LABEL_OUTPUT = "label"


@dataclass(frozen=True)
class GroupsContract:
    """What assigning groups needs from a groups card, checked."""

    spec: str
    version: str
    score_table: str
    features: tuple[Feature, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    centres: tuple[tuple[float, ...], ...]  # in scaled units, index = the graph's label
    names: tuple[str, ...]
    label_output: str = LABEL_OUTPUT

    @property
    def feature_names(self) -> list[str]:
        """Feature names in the card's order (the graph's inputs)."""
        return [f.name for f in self.features]

    def as_contract(self) -> Contract:
        """The features as a :class:`~mallscore.contract.Contract`, to reuse its quarantine rules."""
        names = tuple(self.feature_names)
        return Contract(self.spec, self.version, self.score_table, self.features, names, self.label_output, 0.5, ())


def is_groups_card(card: Mapping[str, Any]) -> bool:
    """True for a behaviour-groups card (``kind: groups``), False for a classifier's."""
    return card.get("kind") == KIND


def groups_contract_from_card(card: Mapping[str, Any]) -> GroupsContract:
    """Check a groups card and return its contract (ConfigError if unusable)."""
    where = f"model card {card.get('spec', '?')}/{card.get('version', '?')}"
    try:
        raw_features, scaling, groups = card["features"], card["scaling"], card["groups"]
        spec, version = str(card["spec"]), str(card["version"])
        inputs = list(card["onnx"]["inputs"])
        label_output = str(card["onnx"]["label_output"])
    except (KeyError, TypeError):
        raise ConfigError(f"{where}: a groups card needs features, scaling, groups and onnx inputs/label") from None
    features = features_from_card(raw_features, where)
    names = [f.name for f in features]
    if inputs != names:
        raise ConfigError(f"{where}: ONNX inputs {inputs} do not match the features {names} one for one")
    n = len(features)
    try:
        mean = tuple(card_number(v, "scaling mean") for v in scaling["mean"])
        scale = tuple(card_number(v, "scaling scale") for v in scaling["scale"])
        centres = tuple(tuple(card_number(v, "centre") for v in g["centre_scaled"]) for g in groups)
        group_names = tuple(g["name"] for g in groups)
    except (KeyError, TypeError):
        raise ConfigError(f"{where}: scaling needs mean and scale, each group centre_scaled and name") from None
    if len(mean) != n or len(scale) != n or any(s <= 0 for s in scale):
        raise ConfigError(f"{where}: scaling must give one mean and one positive scale per feature")
    if len(centres) < 2 or any(len(c) != n for c in centres) or card.get("k") != len(centres):
        raise ConfigError(f"{where}: k must equal the number of groups (at least 2), each centre one value per feature")
    if any(not isinstance(g, str) or not g.strip() for g in group_names) or len(set(group_names)) != len(group_names):
        raise ConfigError(f"{where}: group names must be unique, non-empty strings")
    score_table = str(card.get("score_table", "features_customer"))
    if not PLAIN_NAME.match(score_table):
        raise ConfigError(f"{where}: score_table {score_table!r} is not a plain relation name")
    return GroupsContract(spec, version, score_table, features, mean, scale, centres, group_names, label_output)


def check_graph(card: Mapping[str, Any], onnx_bytes: bytes) -> None:
    """The ONNX graph takes the card's inputs as float [N, 1] and has an int64 label output (imports onnx)."""
    import onnx

    where = f"model {card.get('spec')}/{card.get('version')}"
    gc = groups_contract_from_card(card)
    try:
        graph = onnx.load_from_string(onnx_bytes).graph
    except Exception:  # the protobuf parser raises several types
        raise ConfigError(f"{where}: model.onnx is not a readable ONNX graph") from None
    constants = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in constants]
    if [i.name for i in inputs] != gc.feature_names:
        raise ConfigError(f"{where}: the ONNX graph's inputs are not the card's {gc.feature_names}")
    for i in inputs:
        dims = i.type.tensor_type.shape.dim
        if i.type.tensor_type.elem_type != onnx.TensorProto.FLOAT or len(dims) != 2 or dims[1].dim_value != 1:
            raise ConfigError(f"{where}: ONNX input {i.name!r} is not a float tensor of shape [N, 1]")
    outputs = {o.name: o.type.tensor_type.elem_type for o in graph.output}
    if outputs.get(gc.label_output) != onnx.TensorProto.INT64:
        raise ConfigError(f"{where}: the ONNX graph has no int64 output {gc.label_output!r} (the group label)")


class _Prefixed(Params):
    """Another renderer's values under prefixed keys, so the groups rules never overwrite the classifier's."""

    def __init__(self, inner: Params, prefix: str) -> None:
        super().__init__()
        self.inner, self.prefix = inner, prefix

    def ref(self, key: str, value: Any) -> str:
        return self.inner.ref(self.prefix + key, value)

    def number(self, key: str, value: float) -> str:
        return self.inner.number(self.prefix + key, value)

    def text(self, key: str, value: str) -> str:
        return self.inner.text(self.prefix + key, value)

    def is_one_of(self, column: str, key: str, values: Sequence[float]) -> str:
        return self.inner.is_one_of(column, self.prefix + key, values)

    def as_text(self, expr: str) -> str:
        return self.inner.as_text(expr)

    def quote(self, identifier: str) -> str:
        return self.inner.quote(identifier)


def eligible_sql(gc: GroupsContract, values: Params, columns: Sequence[str], score: str) -> str:
    """A SQL condition: the row gets a group (``score`` observed, every feature passes the card's rules)."""
    return f"({score} is not null and {passes_sql(gc.as_contract(), _Prefixed(values, 'g_'), columns)})"


def nearest_sql(gc: GroupsContract, values: Params, inputs: Sequence[str]) -> tuple[list[str], str]:
    """SQL for the nearest centre: (one squared-distance expression per group, the name of the argmin).

    ``inputs`` are expressions of the features already rounded to float32 as the graph does; the
    distances are taken in the card's scaled space in double precision; the first group wins a tie.
    """
    scaled = [
        f"(({x}) - {values.number(f'g_mean_{j}', m)}) / {values.number(f'g_scale_{j}', s)}"
        for j, (x, m, s) in enumerate(zip(inputs, gc.mean, gc.scale))
    ]
    distances = [
        " + ".join(
            f"(({x}) - {values.number(f'g_c{i}_{j}', c)}) * (({x}) - {values.number(f'g_c{i}_{j}', c)})"
            for j, (x, c) in enumerate(zip(scaled, centre))
        )
        for i, centre in enumerate(gc.centres)
    ]
    return distances, distances_to_name(gc, values, [f"__gd_{i}" for i in range(len(distances))])


def distances_to_name(gc: GroupsContract, values: Params, d: Sequence[str]) -> str:
    """``case`` picking the name of the smallest of the columns ``d`` (the first on a tie)."""
    whens = []
    for i in range(len(d) - 1):
        others = " and ".join(f"{d[i]} <= {d[j]}" for j in range(len(d)) if j > i)
        whens.append(f"when {others} then {values.text(f'g_name_{i}', gc.names[i])}")
    last = values.text(f"g_name_{len(d) - 1}", gc.names[-1])
    return "case " + " ".join(whens) + f" else {last} end"
