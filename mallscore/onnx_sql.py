"""An ONNX graph evaluated symbolically into SQL: every tensor a list of column expressions, every node a CTE.

:func:`compile_graph` reads the graph with the ``onnx`` package (no
scikit-learn) after parsing the card with the one card parser
(:func:`mallscore.contract.contract_from_card`). The operators are the ones
skl2onnx emits for StandardScaler, KBinsDiscretizer (one-hot), OneHotEncoder,
passthrough columns and LogisticRegression: Scaler, Cast, Concat,
FeatureVectorizer, Gather, ArrayFeatureExtractor, Reshape, Identity, the
arithmetic and comparison operators with constants, ArgMax, OneHotEncoder,
LinearClassifier, Normalizer, Sigmoid and Softmax. Anything else (trees,
zipmap, multi-class...) is refused with :class:`ModelNotExpressibleError`
(exit 78) naming what cannot be expressed. :mod:`mallscore.sqlexport` turns
the result into the statements users run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mallscore.contract import Literals, literal
from mallscore.errors import ConfigError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_EXP_LIMIT = 700.0  # exp() of more than ~709 overflows a double; PostgreSQL raises instead of returning inf

# ONNX TensorProto element types
FLOAT, _DOUBLE, _INT32, _INT64, _BOOL, _STRING = 1, 11, 6, 7, 9, 8


@dataclass(frozen=True)
class Dialect:
    """How one engine spells what the compiled SQL needs: the double type, quoted names, string literals."""

    name: str
    double: str = "double precision"
    quote_char: str = '"'
    text: str = "varchar"
    backslash_escapes: bool = False  # Spark reads \ in a string literal as an escape
    fence: bool = False  # PostgreSQL inlines CTEs: "offset 0" keeps every step its own subquery

    def literals(self) -> Literals:
        """The contract's rendering of card values for this engine."""
        return Literals(self.double, self.text, self.quote_char, self.backslash_escapes)

    def quote(self, identifier: str) -> str:
        """A plain identifier quoted (ModelNotExpressibleError for anything else)."""
        return quote_plain(identifier, self.quote_char)

    def to_double(self, expr: str) -> str:
        return f"cast({expr} as {self.double})"

    def truncate(self, expr: str) -> str:
        """Truncation toward zero of a finite double, as an integer (Spark's trunc() is a date function)."""
        return f"cast({expr} as bigint)" if self.name == "spark" else f"trunc({expr})"


DUCKDB = Dialect("duckdb")
POSTGRES = Dialect("postgres", fence=True)
# Spark 3.5 / 4.x: `double`, backtick names, no length-free varchar, backslash escapes in strings.
SPARK = Dialect("spark", double="double", quote_char="`", text="string", backslash_escapes=True)
DIALECT_SPECS = {d.name: d for d in (DUCKDB, POSTGRES, SPARK)}


class ModelNotExpressibleError(ConfigError):
    """The model uses something this compiler cannot express exactly in SQL (exit 78)."""


@dataclass
class Tensor:
    """A symbolic 2-D tensor: one SQL expression per column (rows are table rows)."""

    columns: list[str]
    kind: str  # "float", "int", "bool", "string"


@dataclass
class _Program:
    """CTEs being built: each adds columns to the previous one."""

    ctes: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    counter: int = 0

    def materialise(self, exprs: list[str], hint: str) -> list[str]:
        """Add ``exprs`` as new columns in a new CTE; return their names."""
        step = len(self.ctes) + 1
        names = [f"{hint}_{step}_{j}" for j in range(len(exprs))]
        self.ctes.append((f"step_{step}", list(zip(names, exprs))))
        return names


def _literal(value: float, dialect: Dialect = DUCKDB) -> str:
    """A double constant every engine reads exactly (the contract's rendering)."""
    try:
        return literal(value, dialect.double)
    except ConfigError as exc:
        raise ModelNotExpressibleError(str(exc)) from None


def quote_plain(identifier: str, quote_char: str = '"') -> str:
    """A plain identifier, quoted (double quotes; Spark: backticks); ModelNotExpressibleError for anything else."""
    if not _IDENTIFIER.match(identifier):
        raise ModelNotExpressibleError(f"{identifier!r} is not a plain SQL identifier; cannot reference it safely")
    return quote_char + identifier + quote_char


def _sigmoid(s: str) -> str:
    """A sigmoid that never overflows exp() (PostgreSQL errors on overflow and underflow)."""
    return (
        f"(case when {s} >= 0 then 1 / (1 + exp(-least({s}, {_EXP_LIMIT}))) "
        f"else exp(greatest({s}, -{_EXP_LIMIT})) / (1 + exp(greatest({s}, -{_EXP_LIMIT}))) end)"
    )


class Compiler:
    """Walks the graph in order, keeping a symbolic value for every tensor name."""

    def __init__(self, model: Any, dialect: Dialect = DUCKDB) -> None:
        from onnx import numpy_helper

        self.dialect = dialect
        self.one, self.zero = dialect.to_double("1"), dialect.to_double("0")
        self.model = model
        self.graph = model.graph
        self.values: dict[str, Tensor] = {}
        self.constants: dict[str, Any] = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        self.program = _Program()
        self.linear: dict | None = None  # the LinearClassifier's inputs and coefficients (for the reasons)

    def _literal(self, value: float) -> str:
        return _literal(value, self.dialect)

    def _text(self, value: str) -> str:
        return self.dialect.literals().text("", value)

    def attrs(self, node: Any) -> dict[str, Any]:
        from onnx import helper

        out = {}
        for a in node.attribute:
            value = helper.get_attribute_value(a)
            out[a.name] = value.decode() if isinstance(value, bytes) else value
        return out

    def tensor(self, name: str, node: Any) -> Tensor:
        if name not in self.values:
            raise ModelNotExpressibleError(
                f"{node.op_type} node {node.name!r} reads {name!r}, which is not a feature-derived tensor"
            )
        return self.values[name]

    def const(self, name: str, node: Any):
        if name not in self.constants:
            raise ModelNotExpressibleError(f"{node.op_type} node {node.name!r}: input {name!r} must be a constant")
        return self.constants[name]

    def operand(self, name: str, node: Any) -> tuple[list[str], str]:
        """A node input as column expressions (constants become literals)."""
        if name in self.values:
            t = self.values[name]
            return t.columns, t.kind
        import numpy as np

        array = np.asarray(self.const(name, node))
        if array.ndim > 2 or (array.ndim == 2 and array.shape[0] != 1):
            raise ModelNotExpressibleError(
                f"{node.op_type} node {node.name!r}: constant of shape {array.shape} is not a row"
            )
        flat = array.reshape(-1)
        if flat.dtype.kind in "fiub":
            return [self._literal(v) for v in flat], "float"
        raise ModelNotExpressibleError(
            f"{node.op_type} node {node.name!r}: constant of type {flat.dtype} is not supported"
        )

    @staticmethod
    def broadcast(a: list[str], b: list[str], node: Any) -> tuple[list[str], list[str]]:
        if len(a) == len(b):
            return a, b
        if len(a) == 1:
            return a * len(b), b
        if len(b) == 1:
            return a, b * len(a)
        raise ModelNotExpressibleError(
            f"{node.op_type} node {node.name!r}: cannot broadcast {len(a)} and {len(b)} columns"
        )

    def emit(self, node: Any, exprs: list[str], kind: str, output: int = 0) -> None:
        names = self.program.materialise(exprs, "v")
        self.values[node.output[output]] = Tensor(names, kind)

    # -- operators -------------------------------------------------------------------

    def run(self, node: Any) -> None:
        handler = getattr(self, f"op_{node.op_type}", None)
        if handler is None or node.domain not in ("", "ai.onnx", "ai.onnx.ml"):
            raise ModelNotExpressibleError(
                f"the ONNX operator {node.op_type!r} ({node.domain or 'ai.onnx'}) has no SQL form"
            )
        handler(node, self.attrs(node))

    def op_Identity(self, node, attrs):
        self.values[node.output[0]] = self.tensor(node.input[0], node)

    def op_Concat(self, node, attrs):
        if attrs.get("axis") not in (1, -1):
            raise ModelNotExpressibleError(
                f"Concat node {node.name!r} joins along axis {attrs.get('axis')}, not columns"
            )
        parts = [self.tensor(n, node) for n in node.input]
        kinds = {p.kind for p in parts}
        if len(kinds) != 1:
            raise ModelNotExpressibleError(f"Concat node {node.name!r} mixes types {sorted(kinds)}")
        self.values[node.output[0]] = Tensor([c for p in parts for c in p.columns], kinds.pop())

    def op_FeatureVectorizer(self, node, attrs):
        dims = list(attrs.get("inputdimensions") or [])
        if len(dims) != len(node.input):
            raise ModelNotExpressibleError(f"FeatureVectorizer node {node.name!r} without one dimension per input")
        columns: list[str] = []
        for name, dim in zip(node.input, dims):
            part = self.tensor(name, node)
            if part.kind not in ("float", "int"):
                raise ModelNotExpressibleError(f"FeatureVectorizer node {node.name!r} on {part.kind} input")
            cols = part.columns[:dim] + [self.zero] * max(
                dim - len(part.columns), 0
            )  # truncate / zero-pad as onnxruntime does
            columns += cols if part.kind == "float" else [self.dialect.to_double(c) for c in cols]
        self.values[node.output[0]] = Tensor(columns, "float")

    def _select(self, node, source: Tensor, indices) -> None:
        import numpy as np

        idx = np.asarray(indices).reshape(-1)
        width = len(source.columns)
        if idx.size == 0 or idx.min() < -width or idx.max() >= width:
            raise ModelNotExpressibleError(f"{node.op_type} node {node.name!r}: column index out of range")
        self.values[node.output[0]] = Tensor([source.columns[int(i)] for i in idx], source.kind)

    def op_Gather(self, node, attrs):
        if attrs.get("axis", 0) not in (1, -1):
            raise ModelNotExpressibleError(
                f"Gather node {node.name!r} selects along axis {attrs.get('axis', 0)}, not columns"
            )
        self._select(node, self.tensor(node.input[0], node), self.const(node.input[1], node))

    def op_ArrayFeatureExtractor(self, node, attrs):
        self._select(node, self.tensor(node.input[0], node), self.const(node.input[1], node))

    def op_Reshape(self, node, attrs):
        import numpy as np

        source = self.tensor(node.input[0], node)
        shape = [int(s) for s in np.asarray(self.const(node.input[1], node)).reshape(-1)]
        if len(shape) != 2 or shape[0] not in (-1, 0) or shape[1] not in (-1, len(source.columns)):
            raise ModelNotExpressibleError(f"Reshape node {node.name!r} to {shape} does not flatten rows")
        self.values[node.output[0]] = source

    def op_Flatten(self, node, attrs):
        if attrs.get("axis", 1) != 1:
            raise ModelNotExpressibleError(f"Flatten node {node.name!r} with axis {attrs.get('axis')}")
        self.values[node.output[0]] = self.tensor(node.input[0], node)

    def op_Cast(self, node, attrs):
        source = self.tensor(node.input[0], node)
        to = attrs["to"]
        if to in (FLOAT, _DOUBLE):
            if source.kind == "float":
                self.values[node.output[0]] = source
                return
            if source.kind == "bool":
                self.emit(
                    node, [f"(case when {c} then {self.one} else {self.zero} end)" for c in source.columns], "float"
                )
                return
            if source.kind == "int":
                self.emit(node, [self.dialect.to_double(c) for c in source.columns], "float")
                return
        elif to in (_INT32, _INT64):
            if source.kind == "int":
                self.values[node.output[0]] = source
                return
            if source.kind == "float":  # C cast: truncation toward zero
                self.emit(node, [self.dialect.truncate(c) for c in source.columns], "int")
                return
            if source.kind == "bool":
                self.emit(node, [f"(case when {c} then 1 else 0 end)" for c in source.columns], "int")
                return
        elif to == _BOOL and source.kind in ("float", "int"):
            self.emit(node, [f"({c} <> 0)" for c in source.columns], "bool")
            return
        raise ModelNotExpressibleError(f"Cast node {node.name!r} from {source.kind} to ONNX type {to}")

    def op_Scaler(self, node, attrs):
        source = self.tensor(node.input[0], node)
        n = len(source.columns)
        offset = list(attrs.get("offset", [0.0])) or [0.0]
        scale = list(attrs.get("scale", [1.0])) or [1.0]
        offset, scale = (offset * n if len(offset) == 1 else offset), (scale * n if len(scale) == 1 else scale)
        if len(offset) != n or len(scale) != n:
            raise ModelNotExpressibleError(f"Scaler node {node.name!r} has {len(offset)} offsets for {n} columns")
        self.emit(
            node,
            [f"(({c} - {self._literal(o)}) * {self._literal(s)})" for c, o, s in zip(source.columns, offset, scale)],
            "float",
        )

    def _binary(self, node, symbol: str, kind: str | None = None) -> None:
        a, ka = self.operand(node.input[0], node)
        b, kb = self.operand(node.input[1], node)
        if node.input[0] not in self.values and node.input[1] not in self.values:
            raise ModelNotExpressibleError(f"{node.op_type} node {node.name!r} has only constant inputs")
        if "string" in (ka, kb):
            raise ModelNotExpressibleError(f"{node.op_type} node {node.name!r} on strings")
        a, b = self.broadcast(a, b, node)
        self.emit(
            node, [f"({x} {symbol} {y})" for x, y in zip(a, b)], kind or ("int" if ka == kb == "int" else "float")
        )

    def op_Add(self, node, attrs):
        self._binary(node, "+")

    def op_Sub(self, node, attrs):
        self._binary(node, "-")

    def op_Mul(self, node, attrs):
        self._binary(node, "*")

    def op_Div(self, node, attrs):
        a, ka = self.operand(node.input[0], node)
        if ka == "int":
            raise ModelNotExpressibleError(f"Div node {node.name!r} on integers (floor semantics)")
        self._binary(node, "/")

    def op_Less(self, node, attrs):
        self._binary(node, "<", "bool")

    def op_LessOrEqual(self, node, attrs):
        self._binary(node, "<=", "bool")

    def op_Greater(self, node, attrs):
        self._binary(node, ">", "bool")

    def op_GreaterOrEqual(self, node, attrs):
        self._binary(node, ">=", "bool")

    def op_Equal(self, node, attrs):
        self._binary(node, "=", "bool")

    def op_ArgMax(self, node, attrs):
        source = self.tensor(node.input[0], node)
        if attrs.get("axis", 0) not in (1, -1) or attrs.get("keepdims", 1) != 1 or attrs.get("select_last_index", 0):
            raise ModelNotExpressibleError(f"ArgMax node {node.name!r} is not a first-index row argmax")
        if source.kind not in ("float", "int"):
            raise ModelNotExpressibleError(f"ArgMax node {node.name!r} over {source.kind}")
        top = self.program.materialise([f"greatest({', '.join(source.columns)})"], "max")[0]
        whens = " ".join(f"when {c} = {top} then {j}" for j, c in enumerate(source.columns))
        self.emit(node, [f"(case {whens} end)"], "int")

    def op_OneHotEncoder(self, node, attrs):
        source = self.tensor(node.input[0], node)
        if "cats_int64s" in attrs:
            if source.kind != "int":
                raise ModelNotExpressibleError(
                    f"OneHotEncoder node {node.name!r} on {source.kind} input (cast to int64 first)"
                )
            cats = [str(int(c)) for c in attrs["cats_int64s"]]
        elif "cats_strings" in attrs:
            if source.kind != "string":
                raise ModelNotExpressibleError(f"OneHotEncoder node {node.name!r} on {source.kind} input")
            cats = [self._text(c.decode() if isinstance(c, bytes) else c) for c in attrs["cats_strings"]]
        else:
            raise ModelNotExpressibleError(f"OneHotEncoder node {node.name!r} without categories")
        # zeros=0 makes onnxruntime fail on an unknown category: the SQL gives NULL (no probability) there
        exprs = []
        for c in source.columns:
            if attrs.get("zeros", 1):
                exprs += [f"(case when {c} = {cat} then {self.one} else {self.zero} end)" for cat in cats]
            else:
                known = f"{c} in ({', '.join(cats)})"
                exprs += [f"(case when {c} = {cat} then {self.one} when {known} then {self.zero} end)" for cat in cats]
        self.emit(node, exprs, "float")

    def op_LinearClassifier(self, node, attrs):
        import numpy as np

        source = self.tensor(node.input[0], node)
        if source.kind not in ("float", "int"):
            raise ModelNotExpressibleError(f"LinearClassifier node {node.name!r} on {source.kind} input")
        labels = list(attrs.get("classlabels_ints") or attrs.get("classlabels_strings") or [])
        coefficients = np.asarray(attrs["coefficients"], dtype=float)
        intercepts = list(attrs.get("intercepts") or [])
        width = len(source.columns)
        if coefficients.size % width:
            raise ModelNotExpressibleError(
                f"LinearClassifier node {node.name!r}: {coefficients.size} coefficients for {width} inputs"
            )
        rows = coefficients.reshape(-1, width)
        if len(labels) != 2 or rows.shape[0] != 2 or attrs.get("multi_class", 0):
            raise ModelNotExpressibleError(
                f"LinearClassifier node {node.name!r} has {len(labels)} classes and {rows.shape[0]} coefficient rows; "
                "export-sql handles binary logistic regression as skl2onnx exports it (two rows)"
            )
        intercepts = intercepts or [0.0, 0.0]
        post = attrs.get("post_transform", "NONE")
        self.linear = {"columns": list(source.columns), "coefficients": rows.tolist(), "post_transform": post}
        scores = []
        for t in range(2):
            terms = [f"{self._literal(w)} * {c}" for w, c in zip(rows[t], source.columns) if w != 0.0]
            scores.append(" + ".join([self._literal(intercepts[t]), *terms]))
        s = self.program.materialise(scores, "score")
        if post == "LOGISTIC":
            probabilities = [_sigmoid(s[0]), _sigmoid(s[1])]
        elif post == "SOFTMAX":
            probabilities = [_sigmoid(f"({s[0]} - {s[1]})"), _sigmoid(f"({s[1]} - {s[0]})")]
        elif post == "NONE":
            probabilities = list(s)
        else:
            raise ModelNotExpressibleError(f"LinearClassifier node {node.name!r} post_transform {post}")
        if len(node.output) > 1:
            self.emit(node, probabilities, "float", output=1)
        self.label_output = node.output[0]

    def op_Normalizer(self, node, attrs):
        source = self.tensor(node.input[0], node)
        norm = attrs.get("norm", "MAX")
        if norm == "L1":
            total = self.program.materialise([" + ".join(f"abs({c})" for c in source.columns)], "norm")[0]
        elif norm == "L2":
            total = self.program.materialise([f"sqrt({' + '.join(f'{c} * {c}' for c in source.columns)})"], "norm")[0]
        elif norm == "MAX":
            total = self.program.materialise([f"greatest({', '.join(source.columns)})"], "norm")[0]
        else:
            raise ModelNotExpressibleError(f"Normalizer node {node.name!r} norm {norm}")
        self.emit(node, [f"({c} / {total})" for c in source.columns], "float")

    def op_Sigmoid(self, node, attrs):
        source = self.tensor(node.input[0], node)
        self.emit(node, [_sigmoid(c) for c in source.columns], "float")

    def op_Softmax(self, node, attrs):
        source = self.tensor(node.input[0], node)
        if attrs.get("axis", -1) not in (1, -1):
            raise ModelNotExpressibleError(f"Softmax node {node.name!r} along axis {attrs.get('axis')}")
        top = self.program.materialise([f"greatest({', '.join(source.columns)})"], "max")[0]
        exps = self.program.materialise([f"exp({c} - {top})" for c in source.columns], "exp")
        total = " + ".join(exps)
        self.emit(node, [f"({e} / ({total}))" for e in exps], "float")
