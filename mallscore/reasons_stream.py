"""``top_reason`` in the onnxruntime stream: the reason plan's own SQL expressions, evaluated with numpy.

The SQL of :mod:`mallscore.reasons` is the definition (the sql engine, rescore and
``export-sql`` run it). The streaming job used to run it too, as a view over the
scored batches; evaluating it beside the probability instead saves the view's
per-row expressions, and the column reaches DuckDB dictionary-encoded.

Identity with the SQL is by construction and checked by tests on tricky rows:

* only the grammar the compiler writes for reason terms is accepted (double
  constants, the ``x_i`` inputs and step columns, ``+ - * /``, parentheses,
  ``case when a < b then .. else .. end``); anything else (a function, a
  division by a column, a cast to another type) makes :func:`stream_reasons`
  return None and the run keeps the SQL view;
* every operation is one IEEE double operation in the SQL's order, on the
  float32 inputs widened to double, exactly what DuckDB computes;
* the pick is the SQL's: the first feature whose contribution is at least
  (predicted high spender) or at most (the others) every later one, which is
  numpy's first argmax / argmin; the words compare the input with the card's
  mean (or category values) as the SQL does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from mallscore.monitoring import AVERAGE_WORDS
from mallscore.reasons import ReasonPlan

_TOKEN = re.compile(
    r"\s*(?:(?P<const>cast\((?P<num>[-+]?[0-9.]+(?:e[-+]?[0-9]+)?) as (?:double precision|double)\))"
    r"|(?P<name>[a-z_][a-z0-9_]*)|(?P<op>[-+*/<()]))"
)
CHUNK_ROWS = 1 << 14
NO_LABEL = 255  # a row whose category the card lacks: null, as the SQL's case without else
_KEYWORDS = {"case", "when", "then", "else", "end"}


class Unsupported(Exception):
    """An expression outside the grammar this evaluator reproduces exactly."""


Expr = Callable[[dict[str, Any]], Any]


def _tokens(sql: str) -> list[tuple[str, Any]]:
    out, pos, text = [], 0, sql.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise Unsupported(f"cannot read {text[pos : pos + 30]!r}")
        pos = m.end()
        if m.group("const") is not None:
            out.append(("const", float(m.group("num"))))
        elif m.group("name") is not None:
            name = m.group("name")
            out.append(("kw", name) if name in _KEYWORDS else ("name", name))
        else:
            out.append(("op", m.group("op")))
    return out


class _Parser:
    """Recursive descent over the compiler's arithmetic; builds closures over a dict of float64 arrays."""

    def __init__(self, sql: str) -> None:
        self.tokens = _tokens(sql)
        self.i = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str, value: Any = None) -> Any:
        tok = self.peek()
        if tok is None or tok[0] != kind or (value is not None and tok[1] != value):
            raise Unsupported(f"expected {value or kind}, found {tok}")
        self.i += 1
        return tok[1]

    def parse(self) -> Expr:
        expr = self.sum()
        if self.peek() is not None:
            raise Unsupported(f"unexpected {self.peek()}")
        return expr

    def sum(self) -> Expr:
        left = self.product()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.take("op")
            right = self.product()
            left = _add(left, right) if op == "+" else _sub(left, right)
        return left

    def product(self) -> Expr:
        left = self.unary()
        while self.peek() in (("op", "*"), ("op", "/")):
            op = self.take("op")
            right = self.unary()
            if op == "/":
                right = _constant_divisor(right)
            left = _mul(left, right) if op == "*" else _div(left, right)
        return left

    def unary(self) -> Expr:
        if self.peek() == ("op", "-"):
            self.take("op", "-")
            inner = self.unary()
            return lambda env: -inner(env)
        return self.primary()

    def primary(self) -> Expr:
        kind, value = self.peek() or ("end", None)
        if kind == "const":
            self.i += 1
            return _const(value)
        if kind == "name":
            self.i += 1
            return lambda env, n=value: env[n]
        if (kind, value) == ("op", "("):
            self.take("op", "(")
            inner = self.sum()
            self.take("op", ")")
            return inner
        if (kind, value) == ("kw", "case"):
            return self.case()
        raise Unsupported(f"unexpected {kind} {value!r}")

    def case(self) -> Expr:
        import numpy as np

        self.take("kw", "case")
        whens = []
        while self.peek() == ("kw", "when"):
            self.take("kw", "when")
            left = self.sum()
            self.take("op", "<")
            right = self.sum()
            self.take("kw", "then")
            whens.append((left, right, self.sum()))
        self.take("kw", "else")
        otherwise = self.sum()
        self.take("kw", "end")
        if not whens:
            raise Unsupported("a case without when")

        def run(env: dict[str, Any]) -> Any:
            out = np.broadcast_to(np.asarray(otherwise(env), dtype=np.float64), env["__shape__"]).copy()
            for left, right, then in reversed(whens):  # the first true test wins, as in SQL
                out = np.where(left(env) < right(env), then(env), out)
            return out

        return run


def _average(value: float) -> float:
    """The average customer's term as the SQL literal reads it (Unsupported if the literal is not exact)."""
    from mallscore.onnx_sql import _literal

    tokens = _tokens(_literal(value))
    if tokens != [("const", value)]:
        raise Unsupported(f"the literal for {value!r} does not read back exactly")
    return float(value)


def _const(value: float) -> Expr:
    import numpy as np

    c = np.float64(value)
    return lambda env: c


def _constant_divisor(expr: Expr) -> Expr:
    try:
        probe = expr({"__shape__": (0,)})  # a constant evaluates without any column
    except KeyError:
        probe = None
    if not isinstance(probe, float) or probe == 0.0:
        raise Unsupported("a division by a column or by zero")
    return expr


def _add(a: Expr, b: Expr) -> Expr:
    return lambda env: a(env) + b(env)


def _sub(a: Expr, b: Expr) -> Expr:
    return lambda env: a(env) - b(env)


def _mul(a: Expr, b: Expr) -> Expr:
    return lambda env: a(env) * b(env)


def _div(a: Expr, b: Expr) -> Expr:
    return lambda env: a(env) / b(env)


class StreamReasons:
    """Codes into :attr:`labels` for each scored batch; build with :func:`stream_reasons`."""

    def __init__(self, plan: ReasonPlan) -> None:
        self.plan = plan
        self.steps = [(name, [(c, _Parser(e).parse()) for c, e in cols]) for name, cols in plan.steps]
        self.terms = [_Parser(t).parse() for t in plan.terms]
        self.average = [_average(a) for a in plan.average]  # as contribution_columns writes them
        labels: list[str] = []
        self.first: list[int] = []  # each feature's first label
        for b in plan.features:
            self.first.append(len(labels))
            if b.values is not None:
                labels += [f"{b.name}: {w}" for w in b.value_words]
            else:
                labels += [f"{b.name}: {b.above}", f"{b.name}: {b.below}", f"{b.name}: {AVERAGE_WORDS}"]
        if len(labels) > 127:
            raise Unsupported(f"{len(labels)} labels do not fit int8 dictionary indices")
        self.labels = labels
        self.threshold = float(plan.threshold)
        self._dictionary: Any = None

    def codes(self, inputs: Sequence[Any], p: Any) -> Any:
        """The label index of each row (uint8; :data:`NO_LABEL` where none matches: null), observed rows included."""
        import numpy as np

        flat = [np.asarray(v, dtype=np.float32).reshape(-1) for v in inputs]
        p = np.asarray(p, dtype=np.float32).reshape(-1)
        out = np.empty(len(p), dtype=np.uint8)
        # in slices that stay in the CPU's cache: a whole batch's temporaries would each be a fresh mapping
        for start in range(0, len(p), CHUNK_ROWS):
            end = start + CHUNK_ROWS
            out[start:end] = self._codes([v[start:end] for v in flat], p[start:end])
        return out

    def _codes(self, inputs: Sequence[Any], p: Any) -> Any:
        import numpy as np

        env: dict[str, Any] = {"__shape__": (len(p),)}
        for (name, _), values in zip(self.plan.inputs, inputs):
            env[name] = values.astype(np.float64)
        for _, cols in self.steps:
            for column, expr in cols:
                env[column] = expr(env)
        # The SQL's pick: the first contribution >= every later one (predicted high spender) or <= every later
        # one (the others): the first maximum of the contributions, negated for the others (negation is exact).
        sign = np.where(p.astype(np.float64) >= self.threshold, 1.0, -1.0)
        # (a zero average is skipped: t - 0.0 is t, and t - (-0.0) differs from t only in the sign of a zero)
        signed = [
            (term(env) - average if average else term(env)) * sign for term, average in zip(self.terms, self.average)
        ]
        after = [None] * len(signed)  # the greatest of the later contributions
        for j in range(len(signed) - 2, -1, -1):
            later = signed[j + 1]
            after[j] = later if after[j + 1] is None else np.maximum(later, after[j + 1])
        code, before = None, None
        for j, b in enumerate(self.plan.features):
            picked = np.ones(len(p), dtype=bool) if after[j] is None else signed[j] >= after[j]
            if before is not None:
                picked &= signed[j] > before
                before = np.maximum(before, signed[j])
            else:
                before = signed[j]
            part = picked.view(np.uint8) * self._label(b, self.first[j], env[self.plan.inputs[j][0]])
            code = part if code is None else code + part
        return code

    @staticmethod
    def _label(b: Any, first: int, x: Any) -> Any:
        """Feature ``b``'s label for each value as uint8 (:data:`NO_LABEL` for a category the card lacks)."""
        import numpy as np

        if b.values is None:  # above the mean: the first label, below: the second, equal: the third
            mean = np.float64(b.mean)
            return np.uint8(first) + (x < mean).view(np.uint8) + ((x == mean).view(np.uint8) << np.uint8(1))
        label = np.full(len(x), NO_LABEL, dtype=np.uint8)
        for k, v in enumerate(b.values):
            label[x == np.float64(v)] = first + k
        return label

    def column(self, inputs: Sequence[Any], p: Any, observed: Any) -> Any:
        """``top_reason`` for one batch as an Arrow dictionary array (null where ``observed`` is set)."""
        import numpy as np
        import pyarrow as pa

        if self._dictionary is None:
            self._dictionary = pa.array(self.labels, type=pa.string())
        codes = self.codes(inputs, p)
        codes[_valid(observed)] = NO_LABEL
        valid = codes != NO_LABEL
        bitmap = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
        # int8 indices (NO_LABEL reads as -1 under the null bitmap); from_buffers: no pandas import
        indices = pa.Array.from_buffers(pa.int8(), len(codes), [bitmap, pa.py_buffer(codes)])
        return pa.DictionaryArray.from_arrays(indices, self._dictionary, safe=False)


def reason_type() -> Any:
    """The Arrow type of the streamed ``top_reason`` column."""
    import pyarrow as pa

    return pa.dictionary(pa.int8(), pa.string())


def _valid(array: Any) -> Any:
    """Where an Arrow array has a value, as a numpy bool array (without importing pyarrow.compute)."""
    import numpy as np

    n = len(array)
    if array.null_count == n:
        return np.zeros(n, dtype=bool)
    if array.null_count == 0:
        return np.ones(n, dtype=bool)
    bits = np.frombuffer(array.buffers()[0], dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little")[array.offset : array.offset + n].astype(bool)


def stream_reasons(plan: ReasonPlan | None) -> StreamReasons | None:
    """The numpy evaluator of ``plan``, or None (no plan, or SQL outside the exact grammar: keep the view)."""
    if plan is None:
        return None
    try:
        return StreamReasons(plan)
    except Unsupported:
        return None
