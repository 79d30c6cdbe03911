"""ONNX export: parity with scikit-learn is a gate; a broken export fails it and registers nothing."""

import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest

from mallscore.errors import ConfigError
from mallscore.settings import Settings
from mallscore.specs import get_spec
from mallscore.training import QUICK, export, train_frame, tuning
from tests.helpers import labelled_features


def _fitted(preprocessing: str):
    X, y = labelled_features(200)
    spec = get_spec("default")
    params = {
        "preprocessing": preprocessing,
        "C": 1.0,
        "l1_ratio": 0.0,
        "solver": "newton-cholesky",
        "class_weight": None,
    }
    return spec, tuning.make_pipeline(spec, QUICK, params).fit(X, y), X


@pytest.mark.parametrize("preprocessing", ["scale", "bins5"])
def test_export_passes_parity_with_named_float32_inputs(preprocessing):
    spec, pipe, X = _fitted(preprocessing)
    result = export.export_onnx(pipe, spec, X, threshold=0.5, parity_rows=10_000, seed=1)
    assert result.rows_checked == X.shape[0] + 10_000
    assert result.max_abs_diff <= 1e-5 and result.label_flips == 0
    assert result.sha256 == hashlib.sha256(result.onnx_bytes).hexdigest()
    session = ort.InferenceSession(result.onnx_bytes, providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == [
        (name, [None, 1], "tensor(float)") for name in spec.feature_names
    ]
    out = {o.name: o for o in session.get_outputs()}
    assert out["probabilities"].shape == [None, 2]
    feeds = {name: X[:, [i]].astype(np.float32) for i, name in enumerate(spec.feature_names)}
    (probs,) = session.run(["probabilities"], feeds)
    np.testing.assert_allclose(probs[:, 1], pipe.predict_proba(X)[:, 1], atol=1e-5)


def _skl2onnx_graph(pipe, features) -> onnx.ModelProto:
    """skl2onnx's own graph, as export.convert builds it before concat_feature_inputs."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    return convert_sklearn(
        pipe,
        initial_types=[(name, FloatTensorType([None, 1])) for name in features],
        options={id(pipe.steps[-1][1]): {"zipmap": False}},
        target_opset=export.TARGET_OPSET,
    )


@pytest.mark.parametrize("preprocessing", ["scale", "bins5"])
def test_export_joins_feature_inputs_with_concat_and_scores_exactly_as_skl2onnx_graph(preprocessing):
    spec, pipe, X = _fitted(preprocessing)
    original = _skl2onnx_graph(pipe, spec.feature_names)
    exported = onnx.load_from_string(export.convert(pipe, spec.feature_names))
    ops = [n.op_type for n in exported.graph.node]
    assert "FeatureVectorizer" not in ops
    if preprocessing == "scale":  # skl2onnx joins the three inputs with a FeatureVectorizer; we with a Concat
        assert "FeatureVectorizer" in [n.op_type for n in original.graph.node]
        [concat] = [n for n in exported.graph.node if n.op_type == "Concat"]
        assert list(concat.input) == spec.feature_names
        assert [(a.name, a.i) for a in concat.attribute] == [("axis", 1)]
    rng = np.random.default_rng(3)
    rows = np.vstack([X, rng.uniform(-1e4, 1e4, size=(5_000, X.shape[1]))]).astype(np.float32)
    feeds = {name: np.ascontiguousarray(rows[:, [i]]) for i, name in enumerate(spec.feature_names)}
    outputs = []
    for model in (original, exported):
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, feeds))
    for ours, theirs in zip(*outputs):
        np.testing.assert_array_equal(ours, theirs)


def _vectorizer_graph(inputs: list[tuple[str, int, int]], dims: list[int]) -> onnx.ModelProto:
    """A graph of one FeatureVectorizer over ``(name, element type, width)`` inputs."""
    from onnx import TensorProto, helper

    node = helper.make_node(
        "FeatureVectorizer", [n for n, _, _ in inputs], ["joined"], domain="ai.onnx.ml", inputdimensions=dims
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, t, [None, w]) for n, t, w in inputs],
        [helper.make_tensor_value_info("joined", TensorProto.FLOAT, [None, sum(dims)])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])


@pytest.mark.parametrize(
    "inputs, dims",
    [
        ([("a", 1, 2), ("b", 1, 1)], [2, 1]),  # a two-column input: FeatureVectorizer may pad or truncate it
        ([("a", 1, 1), ("b", 7, 1)], [1, 1]),  # an int64 input: FeatureVectorizer casts it, Concat would not
        ([("a", 1, 1), ("b", 1, 1)], [1, 2]),  # a dimension wider than its input: zero-padded
    ],
)
def test_concat_feature_inputs_leaves_vectorizers_that_cast_pad_or_truncate(inputs, dims):
    model = export.concat_feature_inputs(_vectorizer_graph(inputs, dims))
    assert [n.op_type for n in model.graph.node] == ["FeatureVectorizer"]


def test_concat_feature_inputs_rewrites_one_column_float_inputs():
    model = export.concat_feature_inputs(_vectorizer_graph([("a", 1, 1), ("b", 1, 1), ("c", 1, 1)], [1, 1, 1]))
    [node] = model.graph.node
    assert (node.op_type, node.domain, list(node.input), list(node.output)) == (
        "Concat",
        "",
        ["a", "b", "c"],
        ["joined"],
    )


REAL_CONVERT = export.convert


def _tampered_converter(pipeline, features):
    """A real conversion whose classifier coefficients are then nudged by 1%."""
    model = onnx.load_from_string(REAL_CONVERT(pipeline, features))
    for node in model.graph.node:
        if node.op_type == "LinearClassifier":
            for attr in node.attribute:
                if attr.name == "coefficients":
                    values = [v * 1.01 for v in attr.floats]
                    del attr.floats[:]
                    attr.floats.extend(values)
    return model.SerializeToString()


def test_parity_gate_fails_on_a_tampered_export():
    spec, pipe, X = _fitted("scale")
    with pytest.raises(export.ParityError) as exc:
        export.export_onnx(pipe, spec, X, threshold=0.5, converter=_tampered_converter)
    assert exc.value.exit_code == 78 and "parity gate failed" in str(exc.value)


def test_parity_gate_fails_when_inputs_are_in_the_wrong_order():
    spec, pipe, X = _fitted("scale")

    def swapped(pipeline, features):
        return export.convert(pipeline, [features[1], features[0], *features[2:]])

    with pytest.raises(export.ParityError, match="do not match the features"):
        export.export_onnx(pipe, spec, X, threshold=0.5, converter=swapped)


def test_parity_gate_fails_when_conversion_breaks():
    spec, pipe, X = _fitted("scale")

    def garbage(pipeline, features):
        return b"not a model"

    with pytest.raises(export.ParityError, match="cannot be run by onnxruntime"):
        export.export_onnx(pipe, spec, X, threshold=0.5, converter=garbage)


def _frame(n: int = 200) -> pd.DataFrame:
    X, y = labelled_features(n, seed=4)
    score = np.where(y == 1, 75.0, 25.0)
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1),
            "age": X[:, 0],
            "annual_income": X[:, 1],
            "gender_female": X[:, 2],
            "spending_score": score,
            "high_spender": y,
        }
    )


def test_failed_parity_during_training_registers_nothing(tmp_path, monkeypatch):
    settings = Settings(warehouse=tmp_path / "wh.duckdb", models_dir=tmp_path / "models")
    monkeypatch.setattr(export, "convert", _tampered_converter)
    with pytest.raises(ConfigError, match="parity gate failed"):
        train_frame(_frame(), settings, "default", budget=QUICK)
    assert not (tmp_path / "models" / "default").exists() or not any((tmp_path / "models" / "default").iterdir())


@pytest.mark.parametrize("preprocessing", ["scale", "bins5"])
def test_card_parameters_reproduce_the_model(preprocessing):
    spec, pipe, X = _fitted(preprocessing)
    params = tuning.model_parameters(pipe, spec)
    assert params["preprocessing"] == preprocessing
    if preprocessing == "scale":
        Z = (X - np.array(params["mean"])) / np.array(params["scale"])
    else:
        cols = []
        for i, edges in enumerate(params["edges"].values()):
            k = np.searchsorted(np.array(edges[1:-1]), X[:, i], side="right")
            cols.append(np.eye(len(edges) - 1)[k])
        cols.append(X[:, [spec.feature_names.index(n) for n in params["passthrough"]]])
        Z = np.hstack(cols)
    assert Z.shape[1] == len(params["coef"]) == len(params["columns"])
    p = 1 / (1 + np.exp(-(params["intercept"] + Z @ np.array(params["coef"]))))
    np.testing.assert_allclose(p, pipe.predict_proba(X)[:, 1], atol=1e-9)


# --- the gate's limits, pinned: max |dp| 1e-5 and no label flip -------------------------------

GATE_ROWS = 1_000


def _intercept_shifted_converter(delta: float):
    """A real conversion whose positive-class intercept is then raised by ``delta`` (|dp| up to about delta / 4)."""

    def converter(pipeline, features):
        model = onnx.load_from_string(REAL_CONVERT(pipeline, features))
        [node] = [n for n in model.graph.node if n.op_type == "LinearClassifier"]
        [attr] = [a for a in node.attribute if a.name == "intercepts"]
        values = list(attr.floats)
        values[-1] += delta
        del attr.floats[:]
        attr.floats.extend(values)
        return model.SerializeToString()

    return converter


def _gate_rows(spec, X):
    """The rows export_onnx checks with parity_rows=GATE_ROWS, seed=0."""
    return np.vstack([X, export.synthetic_rows(spec, X, GATE_ROWS, 0)])


def _threshold_in_widest_gap(pipe, rows) -> float:
    """A threshold no row's probability comes near, so a small shift flips no label."""
    p = np.sort(pipe.predict_proba(rows.astype(np.float32).astype(np.float64))[:, 1])
    i = int(np.argmax(np.diff(p)))
    assert p[i + 1] - p[i] > 1e-3
    return float((p[i] + p[i + 1]) / 2)


@pytest.mark.parametrize(
    "delta, low, high, passes",
    [
        (2e-4, 1e-5, 1e-4, False),  # between the limit and 10x the limit: refused
        (2e-5, 1e-6, 1e-5, True),  # just under the limit: let through
    ],
)
def test_parity_gate_limit_is_1e_5(delta, low, high, passes):
    spec, pipe, X = _fitted("scale")
    converter = _intercept_shifted_converter(delta)
    threshold = _threshold_in_widest_gap(pipe, _gate_rows(spec, X))
    figures = export.check_parity(
        pipe, converter(pipe, spec.feature_names), spec.feature_names, _gate_rows(spec, X), threshold
    )
    assert low < figures["max_abs_diff"] < high and figures["label_flips"] == 0  # the case is what it claims to be
    if passes:
        result = export.export_onnx(pipe, spec, X, threshold, parity_rows=GATE_ROWS, seed=0, converter=converter)
        assert result.max_abs_diff == figures["max_abs_diff"] and result.label_flips == 0
        assert result.as_card(spec.feature_names)["max_abs_diff_limit"] == 1e-5
    else:
        with pytest.raises(export.ParityError, match=r"max \|p difference\| .* \(limit 1e-05\), 0 label flip"):
            export.export_onnx(pipe, spec, X, threshold, parity_rows=GATE_ROWS, seed=0, converter=converter)


def test_parity_gate_refuses_a_single_label_flip_even_within_the_probability_limit():
    spec, pipe, X = _fitted("scale")
    X32 = X.astype(np.float32)
    p_onnx = export.onnx_probabilities(REAL_CONVERT(pipe, spec.feature_names), spec.feature_names, X32)
    p_sk = pipe.predict_proba(X32.astype(np.float64))[:, 1]
    worst = int(np.argmax(np.abs(p_onnx - p_sk)))
    assert p_onnx[worst] != p_sk[worst]
    threshold = float((p_onnx[worst] + p_sk[worst]) / 2)  # float32 and float64 fall on either side of it
    figures = export.check_parity(pipe, REAL_CONVERT(pipe, spec.feature_names), spec.feature_names, X, threshold)
    assert figures["max_abs_diff"] < 1e-6 and figures["label_flips"] >= 1
    with pytest.raises(export.ParityError, match=r"[1-9]\d* label flip\(s\) at threshold"):
        export.export_onnx(pipe, spec, X, threshold, parity_rows=GATE_ROWS, seed=0)
