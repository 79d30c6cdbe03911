"""ONNX export with a parity gate: a model is registered only if onnxruntime agrees with scikit-learn.

The graph takes one ``[None, 1]`` float32 input per feature, named after the
feature column, and returns ``probabilities`` (``[N, 2]``); the zipmap is off.
The inputs are joined by a standard ``Concat`` rather than skl2onnx's
``FeatureVectorizer`` (:func:`concat_feature_inputs`): the same tensor, at a
third of the cost in onnxruntime.
Parity is checked on the training rows plus synthetic rows spread across each
feature's range: the largest |p_sklearn - p_onnx| must be <= 1e-5 and no row
may change side of the decision threshold. The synthetic rows are rounded to
float32 first and scikit-learn sees the same rounded values, so the check
measures the model, not the input cast.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from mallscore.errors import ConfigError
from mallscore.specs import ModelSpec

MAX_ABS_DIFF = 1e-5
PROBABILITY_OUTPUT = "probabilities"
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


class ParityError(ConfigError):
    """The exported ONNX model disagrees with scikit-learn; nothing is registered (exit 78)."""


@dataclass(frozen=True)
class ExportResult:
    """The serialised model and the parity figures that let it through."""

    onnx_bytes: bytes
    sha256: str
    max_abs_diff: float
    label_flips: int
    rows_checked: int
    opset: int

    def as_card(self, features: list[str]) -> dict:
        """The ``onnx`` block of the card."""
        return {
            "file": "model.onnx",
            "sha256": self.sha256,
            "inputs": list(features),
            "input_shape": [None, 1],
            "input_type": "float32",
            "probability_output": PROBABILITY_OUTPUT,
            "probability_column": 1,
            "max_abs_diff": self.max_abs_diff,
            "max_abs_diff_limit": MAX_ABS_DIFF,
            "label_flips": self.label_flips,
            "rows_checked": self.rows_checked,
            "opset": self.opset,
        }


def convert(pipeline, features: list[str]) -> bytes:
    """Convert a fitted pipeline with skl2onnx: one float32 [None, 1] input per feature, zipmap off."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    clf = pipeline.steps[-1][1]
    model = convert_sklearn(
        pipeline,
        initial_types=[(name, FloatTensorType([None, 1])) for name in features],
        options={id(clf): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    return concat_feature_inputs(model).SerializeToString()


def concat_feature_inputs(model):
    """``model`` (an ONNX ModelProto) with each FeatureVectorizer over float ``[N, 1]`` graph inputs replaced by
    ``Concat(axis=1)``, in place; returned for chaining.

    skl2onnx joins one-column inputs with the ai.onnx.ml FeatureVectorizer, which onnxruntime runs element by
    element: 57% of a StandardScaler + LogisticRegression graph's time (its profiler, 10M rows in 64Ki-row
    batches: FeatureVectorizer 0.170 s, LinearClassifier 0.069 s, Scaler 0.054 s). Concat gives the same
    ``[N, k]`` float tensor from a memory copy: the whole graph 0.125 s instead of 0.30 s, identical outputs.
    Only nodes whose inputs are all float graph inputs of width 1 with ``inputdimensions`` all 1 are
    replaced (FeatureVectorizer also casts, pads and truncates, which Concat does not); others stay.
    The export's parity gate still compares the result with scikit-learn.
    """
    from onnx import TensorProto, helper

    one_column_floats = {
        i.name
        for i in model.graph.input
        if i.type.tensor_type.elem_type == TensorProto.FLOAT
        and len(i.type.tensor_type.shape.dim) == 2
        and i.type.tensor_type.shape.dim[1].dim_value == 1
    }
    for position, node in enumerate(model.graph.node):
        if node.op_type != "FeatureVectorizer" or node.domain != "ai.onnx.ml":
            continue
        dims = [list(a.ints) for a in node.attribute if a.name == "inputdimensions"]
        if dims != [[1] * len(node.input)] or not set(node.input) <= one_column_floats:
            continue
        concat = helper.make_node("Concat", list(node.input), list(node.output), name=node.name, axis=1)
        model.graph.node[position].CopyFrom(concat)
    return model


def onnx_probabilities(onnx_bytes: bytes, features: list[str], X32: np.ndarray) -> np.ndarray:
    """P(high spender) from onnxruntime for float32 rows whose columns follow ``features``."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if names != list(features):
        raise ParityError(f"exported model inputs {names} do not match the features {list(features)}")
    feeds = {name: np.ascontiguousarray(X32[:, [i]]) for i, name in enumerate(features)}
    (probs,) = session.run([PROBABILITY_OUTPUT], feeds)
    return np.asarray(probs)[:, 1].astype(np.float64)


def synthetic_rows(spec: ModelSpec, X: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` rows spread across each feature's range (allowed bounds, else the observed range widened)."""
    rng = np.random.default_rng(seed)
    cols = []
    for i, feature in enumerate(spec.features):
        if feature.values is not None:
            cols.append(rng.choice(np.array(feature.values, dtype=float), size=n))
            continue
        lo_obs, hi_obs = float(X[:, i].min()), float(X[:, i].max())
        span = max(hi_obs - lo_obs, 1.0)
        lo = feature.min if feature.min is not None else lo_obs - 0.5 * span
        hi = feature.max if feature.max is not None else hi_obs + 0.5 * span
        cols.append(rng.uniform(lo, hi, size=n))
    return np.column_stack(cols)


def check_parity(pipeline, onnx_bytes: bytes, features: list[str], rows: np.ndarray, threshold: float) -> dict:
    """Compare scikit-learn and onnxruntime on ``rows``: max |dp|, label flips at ``threshold``, rows."""
    X32 = np.asarray(rows, dtype=np.float32)
    p_onnx = onnx_probabilities(onnx_bytes, features, X32)
    p_sk = pipeline.predict_proba(X32.astype(np.float64))[:, 1]
    diff = np.abs(p_onnx - p_sk)
    finite = np.isfinite(diff)
    max_diff = float(diff.max()) if finite.all() else float("inf")
    flips = int(((p_onnx >= threshold) != (p_sk >= threshold)).sum())
    return {"max_abs_diff": max_diff, "label_flips": flips, "rows_checked": int(rows.shape[0])}


def opset_of(onnx_bytes: bytes) -> int:
    """The default-domain opset of a serialised model."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    return int(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))


def export_onnx(
    pipeline,
    spec: ModelSpec,
    X: np.ndarray,
    threshold: float,
    *,
    parity_rows: int = 10_000,
    seed: int = 0,
    converter=None,
) -> ExportResult:
    """Convert ``pipeline`` and pass it through the parity gate, or raise ParityError."""
    features = spec.feature_names
    try:
        onnx_bytes = (converter or convert)(pipeline, features)
    except ParityError:
        raise
    except Exception as exc:  # skl2onnx raises many types; all mean "cannot export"
        raise ParityError(f"ONNX conversion of spec {spec.name!r} failed: {type(exc).__name__}: {exc}") from None
    rows = np.vstack([X, synthetic_rows(spec, X, parity_rows, seed)])
    try:
        figures = check_parity(pipeline, onnx_bytes, features, rows, threshold)
    except ParityError:
        raise
    except Exception as exc:  # onnxruntime refuses the graph
        raise ParityError(f"exported model for spec {spec.name!r} cannot be run by onnxruntime: {exc}") from None
    if not figures["max_abs_diff"] <= MAX_ABS_DIFF or figures["label_flips"]:
        raise ParityError(
            f"ONNX parity gate failed for spec {spec.name!r}: max |p difference| {figures['max_abs_diff']:.3g} "
            f"(limit {MAX_ABS_DIFF:g}), {figures['label_flips']} label flip(s) at threshold {threshold:.4f} "
            f"over {figures['rows_checked']} rows; nothing was registered"
        )
    return ExportResult(
        onnx_bytes,
        hashlib.sha256(onnx_bytes).hexdigest(),
        figures["max_abs_diff"],
        figures["label_flips"],
        figures["rows_checked"],
        opset_of(onnx_bytes),
    )
