"""Model cards as files: canonical JSON and its seal, bounded parsing, and the graph a card vouches for.

A card is sealed with ``card_sha256``, the sha256 of its canonical JSON
without that key (:func:`canonical_json`). :func:`parse_card` bounds what a
card file may be (size, nesting, an object) before anything reads it, and
:func:`verify_graph` checks that the ONNX graph has the interface the card
promises. The scoring contract itself (features, threshold, tiers) is
:func:`mallscore.contract.contract_from_card`; :func:`mallscore.registry.verify_model`
applies all of them, for every command that loads a model. Standard library
only (``onnx`` is imported inside :func:`verify_graph`, never on the scoring path).
"""

from __future__ import annotations

import hashlib
import json

from mallscore.errors import ConfigError

CARD_FORMAT = 1
MAX_CARD_BYTES = 4 << 20  # a real card is a few tens of KiB
MAX_CARD_DEPTH = 32  # nesting of JSON objects and arrays


def canonical_json(obj: object) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8, no NaN/Infinity (what card_sha256 is taken over)."""
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise ConfigError(f"model card is not canonical JSON: {exc}") from None
    return text.encode("utf-8")


def card_digest(card: dict) -> str:
    """sha256 of the canonical JSON of ``card`` without its ``card_sha256`` key."""
    return hashlib.sha256(canonical_json({k: v for k, v in card.items() if k != "card_sha256"})).hexdigest()


def seal_card(card: dict) -> dict:
    """A copy of ``card`` with ``card_sha256`` set."""
    sealed = {k: v for k, v in card.items() if k != "card_sha256"}
    sealed["card_sha256"] = card_digest(sealed)
    return sealed


def _depth(raw: bytes) -> int:
    """The deepest nesting of JSON objects and arrays in ``raw`` (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x7D, 0x5D):
            depth -= 1
    return deepest


def parse_card(raw: bytes, where: object) -> dict:
    """The card in ``raw``: bounded in size and depth, UTF-8 JSON, an object (ConfigError otherwise)."""
    if len(raw) > MAX_CARD_BYTES:
        raise ConfigError(f"model card {where} is {len(raw):,} bytes, over the {MAX_CARD_BYTES:,}-byte limit")
    if _depth(raw) > MAX_CARD_DEPTH:
        raise ConfigError(f"model card {where} nests deeper than {MAX_CARD_DEPTH} levels; it is not a model card")
    try:
        card = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"model card {where} is not valid JSON ({exc}); retrain or promote another version") from None
    if not isinstance(card, dict):
        raise ConfigError(f"model card {where} is not a JSON object")
    return card


def check_contract(card: dict) -> None:
    """Check the contract a card implies: a behaviour-groups card's, else a classifier's (ConfigError)."""
    if card.get("kind") == "groups":
        from mallscore.groups.contract import groups_contract_from_card

        groups_contract_from_card(card)
        return
    from mallscore.contract import contract_from_card

    contract_from_card(card)


def verify_graph(card: dict, onnx_bytes: bytes) -> None:
    """The ONNX graph takes the card's inputs as float [N, 1] tensors and its probability output is float [N, 2].

    For the commands that vouch for a model without running it (``models show``,
    ``promote``); scoring checks the same on its onnxruntime session. Imports the
    ``onnx`` package, so it is never called on the scoring path.
    """
    if card.get("kind") == "groups":
        from mallscore.groups.contract import check_graph

        check_graph(card, onnx_bytes)
        return
    import onnx

    where = f"model {card.get('spec')}/{card.get('version')}"
    try:
        graph = onnx.load_from_string(onnx_bytes).graph
    except Exception:  # the protobuf parser raises several types
        raise ConfigError(f"{where}: model.onnx is not a readable ONNX graph") from None

    def shape(value) -> tuple[int, list]:
        tensor = value.type.tensor_type
        return tensor.elem_type, [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]

    constants = {i.name for i in graph.initializer}
    inputs = {i.name: shape(i) for i in graph.input if i.name not in constants}
    expected = [str(i["name"]) if isinstance(i, dict) else str(i) for i in card["onnx"].get("inputs", [])]
    if list(inputs) != expected:
        raise ConfigError(f"{where}: the ONNX graph's inputs {list(inputs)} are not the card's {expected}")
    for name, (elem, dims) in inputs.items():
        if elem != onnx.TensorProto.FLOAT or len(dims) != 2 or dims[1] != 1:
            raise ConfigError(f"{where}: ONNX input {name!r} is not a float tensor of shape [N, 1]")
    outputs = {o.name: shape(o) for o in graph.output}
    output = card["onnx"].get("probability_output")
    if output not in outputs:
        raise ConfigError(f"{where}: the ONNX graph has no output {output!r} (the card's probability output)")
    elem, dims = outputs[output]
    if elem != onnx.TensorProto.FLOAT or len(dims) != 2 or dims[1] not in (2, None):
        raise ConfigError(f"{where}: the card's probability output {output!r} is not a float tensor of shape [N, 2]")
