"""Why a customer is predicted what it is: ``segments.top_reason``, computed from the exported graph in SQL.

For the logistic models training exports, the logit is an intercept plus one
term per input column of the LinearClassifier; each column comes from exactly
one feature (a scaled value, a quantile bin's one-hot column, a passed-through
category), so a feature's term is the sum of its columns' terms, and exact. A
feature's *contribution* is its term for this customer minus its term for the
average customer (the training mean, from the card's reference). The top
reason is the feature whose contribution pushes furthest in the direction of
the prediction (largest for a predicted high spender, most negative for the
others; ties go to the card's first feature), written as the feature's name,
a colon and the card's words for the customer's value against the average
(``age: younger than most customers``, ``gender_female: female``). Customers
whose basis is ``observed`` get null, and so does every customer of a model
whose card has no reference (trained before reasons existed) or whose graph
is not additive per feature (then :func:`plan_reasons` returns None).

Everything is SQL compiled from the graph by :mod:`mallscore.onnx_sql`: the
terms are the compiler's own column expressions, and the average customer's
terms are those same expressions evaluated once on a one-row relation in an
in-memory DuckDB. The scoring job applies one view (:func:`run_view_sql`) to
the scored rows of either engine, in the run's transaction, and ``export-sql``
adds the same expression to its SELECT, so the onnx and sql engines and the
exported SQL give the same reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mallscore.monitoring import AVERAGE_WORDS, Bins, Reference
from mallscore.onnx_sql import DUCKDB, Dialect, _literal

_NAME = re.compile(r"\b(?:x_\d+|[a-z]+_\d+_\d+)\b")
# A column times the constant 0 is a constant (inputs are finite once the contract passed them):
# skl2onnx builds the "last bin" column of KBinsDiscretizer as x_0 * 0 + 1 and shares it between features.
_TIMES_ZERO = re.compile(r"^\(\w+ \* cast\(0\.0+e\+00 as [a-z ]+\)\)$")
_SCALE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ReasonPlan:
    """What the SQL needs: the graph steps the terms read, one term per feature, and the average's terms."""

    inputs: list[tuple[str, str]]  # (x_i, graph input)
    steps: list[tuple[str, list[tuple[str, str]]]]  # only the columns the terms need
    terms: list[str]  # per feature, an expression over the steps' columns
    average: list[float]  # each term at the training mean
    features: tuple[Bins, ...]  # the reference, for the words
    threshold: float


def _dependencies(steps: list[tuple[str, list[tuple[str, str]]]], inputs: list[str]) -> dict[str, frozenset]:
    deps: dict[str, frozenset] = {name: frozenset([i]) for i, name in enumerate(inputs)}
    for _, columns in steps:
        for column, expr in columns:
            found: frozenset = frozenset()
            for name in [] if _TIMES_ZERO.match(expr) else _NAME.findall(expr):
                found |= deps.get(name, frozenset())
            deps[column] = found
    return deps


def _terms(compiled: Any, dialect: Dialect = DUCKDB) -> list[str] | None:
    """One logit term per feature over the compiled columns, or None when the model is not additive per feature."""
    import numpy as np

    linear = compiled.linear
    if linear is None or linear["post_transform"] not in ("LOGISTIC", "SOFTMAX"):
        return None
    rows = np.asarray(linear["coefficients"], dtype=float)
    pc = compiled.probability_column
    if rows.shape[0] != 2 or pc not in (0, 1):
        return None
    if linear["post_transform"] == "LOGISTIC" and not np.allclose(rows[0], -rows[1], rtol=0, atol=_SCALE_TOLERANCE):
        return None  # skl2onnx writes a binary logistic model as [-w, w]; anything else is not one logit
    weights = rows[pc] - rows[1 - pc]  # a positive multiple of the logit's weights: the ranking is the same
    names = [name for name, _ in compiled.inputs]
    deps = _dependencies(compiled.steps, names)
    for name in names:
        deps.setdefault(name, frozenset([names.index(name)]))
    parts: list[list[str]] = [[] for _ in names]
    for column, weight in zip(linear["columns"], weights):
        used = frozenset()
        for name in _NAME.findall(column):
            used |= deps.get(name, frozenset())
        if len(used) > 1:
            return None  # a column mixing features: no per-feature term
        if used and weight != 0.0:
            parts[next(iter(used))].append(f"{_literal(float(weight), dialect)} * {column}")
    return [" + ".join(p) if p else dialect.to_double("0") for p in parts]


def _prune(steps: list[tuple[str, list[tuple[str, str]]]], exprs: list[str]) -> list:
    """The steps' columns that ``exprs`` need, transitively; steps left empty are dropped."""
    needed = {n for e in exprs for n in _NAME.findall(e)}
    for _, columns in reversed(steps):
        for column, expr in columns:
            if column in needed:
                needed |= set(_NAME.findall(expr))
    kept = []
    for name, columns in steps:
        cols = [(c, e) for c, e in columns if c in needed]
        if cols:
            kept.append((name, cols))
    return kept


def _chain(steps: list, first: str, prefix: str) -> tuple[list[str], str]:
    ctes, previous = [], first
    for name, columns in steps:
        body = ",\n        ".join(f"{expr} as {col}" for col, expr in columns)
        ctes.append(f"{prefix}{name} as (\n    select\n        *,\n        {body}\n    from {previous}\n)")
        previous = prefix + name
    return ctes, previous


def _thresholds(steps: list, term: str, i: int) -> list[float] | None:
    """The constants ``c`` of the ``x_i < c`` tests, when those tests are the term's only use of input i, else None.

    Such a term is constant between consecutive thresholds (quantile bins as skl2onnx writes them): it can be
    written as one CASE over x_i with the graph's own values, instead of re-running the bins' steps per row.
    """
    name = f"x_{i}"
    exprs = [term] + [e for _, columns in _prune(steps, [term]) for _, e in columns if not _TIMES_ZERO.match(e)]
    uses = sum(len(re.findall(rf"\b{name}\b", e)) for e in exprs)
    found = [float(c) for e in exprs for c in re.findall(rf"\({name} < cast\(([-+0-9.e]+) as [a-z ]+\)\)", e)]
    return sorted(set(found)) if found and len(found) == uses else None


def _evaluate(con: Any, compiled: Any, terms: list[str], rows: list[list[float]]) -> list[list[float]]:
    """``terms`` evaluated by DuckDB (``con``, in memory) on input ``rows`` (one value per graph input, rounded to
    float32 first)."""
    names = [name for name, _ in compiled.inputs]
    selects = " union all ".join(
        f"select {k} as k, "
        + ", ".join(f"cast(cast({_literal(v)} as real) as double) as {n}" for n, v in zip(names, row))
        for k, row in enumerate(rows)
    )
    ctes, last = _chain(_prune(compiled.steps, terms), "probe_inputs", "probe_")
    sql = (
        f"with probe_inputs as ({selects}),\n"
        + "".join(c + ",\n" for c in ctes)
        + f"final as (select k, {', '.join(f'{t} as t_{i}' for i, t in enumerate(terms))} from {last})\n"
        "select * from final order by k"
    )
    return [[float(v) for v in row[1:]] for row in con.execute(sql).fetchall()]


def plan_reasons(card: dict, onnx_bytes: bytes, reference: Reference | None, dialect: Dialect = DUCKDB):
    """The reason plan for a model in ``dialect``, or None (no reference, or a graph not additive per feature)."""
    if reference is None:
        return None
    from mallscore.sqlexport import compile_graph

    compiled = compile_graph(card, onnx_bytes, dialect)
    terms = _terms(compiled, dialect)
    if terms is None:
        return None
    import duckdb

    local = compiled if dialect is DUCKDB else compile_graph(card, onnx_bytes, DUCKDB)
    local_terms = _terms(local) or terms
    means = [b.mean for b in reference.features]
    con = duckdb.connect(config={"enable_external_access": False})  # one for every evaluation: ~15 ms each
    try:
        average = _evaluate(con, local, local_terms, [means])[0]
        for i, term in enumerate(local_terms):
            cuts = _thresholds(local.steps, term, i)
            if cuts is None:
                continue
            probes = [cuts[0] - max(1.0, abs(cuts[0])), *cuts]  # one value inside each interval
            values = [row[0] for row in _evaluate(con, local, [term], [_set(means, i, x) for x in probes])]
            x = f"x_{i}"
            whens = " ".join(
                f"when {x} < {_literal(c, dialect)} then {_literal(v, dialect)}" for c, v in zip(cuts, values)
            )
            terms[i] = f"(case {whens} else {_literal(values[-1], dialect)} end)"
    finally:
        con.close()
    return ReasonPlan(
        compiled.inputs, _prune(compiled.steps, terms), terms, average, reference.features, compiled.contract.threshold
    )


def _set(values: list[float], i: int, value: float) -> list[float]:
    out = list(values)
    out[i] = value
    return out


def _label(b: Bins, x: str, text: Any, dialect: Dialect = DUCKDB) -> str:
    """The words for feature ``b`` of a customer whose (float32) value is ``x``."""
    if b.values is not None:
        whens = " ".join(
            f"when {x} = {_literal(v, dialect)} then {text(f'{b.name}: {w}')}" for v, w in zip(b.values, b.value_words)
        )
        return f"(case {whens} end)"
    mean = _literal(b.mean, dialect)
    return (
        f"(case when {x} > {mean} then {text(f'{b.name}: {b.above}')} "
        f"when {x} < {mean} then {text(f'{b.name}: {b.below}')} else {text(f'{b.name}: {AVERAGE_WORDS}')} end)"
    )


def labels(plan: ReasonPlan | None) -> tuple[str, ...]:
    """Every ``top_reason`` the plan's SQL can give (the texts of :func:`_label`), for the column's ENUM."""
    if plan is None:
        return ()
    out: list[str] = []
    for b in plan.features:
        words = b.value_words if b.values is not None else (b.above, b.below, AVERAGE_WORDS)
        out += [f"{b.name}: {w}" for w in words]
    return tuple(dict.fromkeys(out))


def _pick(contributions: list[str], labels: list[str], best: str, compare: str) -> str:
    """The label of the first contribution that is the ``best`` (greatest/least) of itself and those after it."""
    if len(labels) == 1:
        return labels[0]
    whens = []
    for j in range(len(labels) - 1):
        rest = contributions[j + 1 :]
        other = rest[0] if len(rest) == 1 else f"{best}({', '.join(rest)})"
        whens.append(f"when {contributions[j]} {compare} {other} then {labels[j]}")
    return f"(case {' '.join(whens)} else {labels[-1]} end)"


def contribution_columns(plan: ReasonPlan, dialect: Dialect = DUCKDB) -> list[tuple[str, str]]:
    """``(name, expression)`` of each feature's contribution: its term minus the average customer's."""
    return [
        (f"reason_c_{i}", f"(({t}) - {_literal(a, dialect)})") for i, (t, a) in enumerate(zip(plan.terms, plan.average))
    ]


def top_reason_sql(
    plan: ReasonPlan, p: str, observed: str, dialect: Dialect = DUCKDB, label_type: str | None = None
) -> str:
    """``top_reason`` over a relation with the contribution columns, the x_i inputs, ``p`` and ``observed``.

    ``label_type``: an ENUM holding :func:`labels` (mallscore.labels) to give the words as, instead of text.
    """
    text = dialect.literals().text

    def word(s: str) -> str:
        return f"cast({text('', s)} as {label_type})" if label_type else text("", s)

    labels = [_label(b, name, word, dialect) for b, (name, _) in zip(plan.features, plan.inputs)]
    cs = [name for name, _ in contribution_columns(plan, dialect)]
    return (
        f"(case when {observed} is not null then null "
        f"when {p} >= {_literal(plan.threshold, dialect)} then {_pick(cs, labels, 'greatest', '>=')} "
        f"else {_pick(cs, labels, 'least', '<=')} end)"
    )


def run_view_sql(plan: ReasonPlan | None, columns: dict[str, str], label_type: str | None = None) -> str:
    """``run_reasoned``: every column of ``run_scored`` (customer_id, updated_at, observed_score, the features, p,
    and whatever else the run passes, such as behaviour_group) plus ``top_reason``.

    ``columns`` maps each graph input to its column in ``run_scored``. ``label_type``: the ENUM type of
    ``segments.top_reason`` (the words then need no cast in the INSERT: 10M rows, about 0.2 s less).
    """
    head = "create or replace temp view run_reasoned as\n"
    if plan is None:
        return head + "select *, cast(null as varchar) as top_reason from run_scored"
    from mallscore.sqlexport import _input_expr

    inputs = ", ".join(f"{_input_expr(columns[g])} as {name}" for name, g in plan.inputs)
    ctes, last = _chain(plan.steps, "reason_inputs", "reason_")
    contributions = contribution_columns(plan)
    helpers = [name for name, _ in plan.inputs] + [c for _, cols in plan.steps for c, _ in cols]
    helpers += [name for name, _ in contributions]
    return head + (
        f"with reason_inputs as (select *, {inputs} from run_scored),\n"
        + "".join(c + ",\n" for c in ctes)
        + f"reason_terms as (select *, {', '.join(f'{e} as {n}' for n, e in contributions)} from {last}),\n"
        f"final as (\n    select * exclude ({', '.join(helpers)}),\n"
        f"        {top_reason_sql(plan, 'cast(p as double)', 'observed_score', label_type=label_type)} as top_reason\n"
        "    from reason_terms\n)\n"
        "select * from final"
    )
