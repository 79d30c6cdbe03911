"""The champion model compiled to one SQL ``SELECT``, to score inside DuckDB or the mall's own warehouse.

The graph is compiled by :mod:`mallscore.onnx_sql` (every node a CTE); this
module wraps it with the scoring job's rules and prints it per dialect.

Numbers: onnxruntime rounds the inputs to float32 and computes in float32.
The SQL rounds the inputs to float32 exactly as the graph does (``cast(x as
real)``), so every comparison (bin edges, categories) sees the same values,
then computes in double precision. Probabilities therefore differ from
onnxruntime by float32 rounding only (observed max |dp| 4e-8 to 1e-7 on 100,000
customers for scaled, binned and one-hot models, identical on DuckDB and
PostgreSQL; the tests require < 1e-6 and no label or segment change). A customer
whose probability lies within ~1e-7 of the threshold or a tier cut could still
land on the other side; training stores cuts as midpoints between observed
probabilities, which keeps them away from real customers' values. Constants are
written with 17 significant digits in exponent form, which DuckDB, PostgreSQL
and Spark read as the exact double.

Dialects (:class:`mallscore.onnx_sql.Dialect`): ``duckdb``; ``postgres`` (each
step fenced with ``offset 0``); ``spark`` for ``spark.sql()`` on Spark 3.5 and
4.x (``double``, backtick names, ``string`` casts, backslash-escaped string
literals, ``cast(x as bigint)`` for truncation; ``real`` is float32 there too,
and NaN sorts above every number, so the finite-float32 rule holds).

The card is parsed by :func:`mallscore.contract.contract_from_card` and the
job's rules come from :mod:`mallscore.contract`, rendered with exact
literals: rows the nightly job would quarantine (a missing, non-finite or
out-of-range feature, an unknown category) are left out; ``segment`` is the
tier of the observed spending score where it is known, else of
``p_high_spender`` (basis says which), exactly as in ``segments``;
``predicted_high_spender`` is ``p_high_spender >= threshold``; ``top_reason`` is
the job's (:mod:`mallscore.reasons`, the same expression over the same steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mallscore.contract import (
    OBSERVED_SCORE_COLUMN,
    Contract,
    basis_sql,
    contract_from_card,
    passes_sql,
    predicted_sql,
    segment_sql,
)
from mallscore.errors import ConfigError, UsageError
from mallscore.onnx_sql import DIALECT_SPECS, DUCKDB, FLOAT, Compiler, Dialect, ModelNotExpressibleError, Tensor

__all__ = ["DIALECTS", "ModelNotExpressibleError", "compile_model_ctes", "compile_model_sql", "export_sql"]

DIALECTS = ("duckdb", "postgres", "spark")


def _needed_nodes(model: Any, output: str) -> list[Any]:
    """The nodes the probability output depends on, in graph order (labels and other outputs are ignored)."""
    producers = {name: node for node in model.graph.node for name in node.output}
    if output not in producers or output not in [o.name for o in model.graph.output]:
        if any(node.op_type == "ZipMap" for node in model.graph.node):
            raise ModelNotExpressibleError(
                "the model was exported with a ZipMap (probabilities as a list of dicts); export it with zipmap off"
            )
        raise ModelNotExpressibleError(f"the graph has no output {output!r} (the card's probability output)")
    needed: set[int] = set()
    stack = [output]
    while stack:
        node = producers.get(stack.pop())
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(node.input)
    return [node for node in model.graph.node if id(node) in needed]


@dataclass
class Compiled:
    """A compiled graph: the card's contract, one input expression per graph input, the steps and the probability."""

    contract: Contract
    inputs: list[tuple[str, str]]  # (column name x_i, graph input name)
    steps: list[tuple[str, list[tuple[str, str]]]]
    p_expr: str
    linear: dict | None = None  # the LinearClassifier's input columns and coefficients (mallscore.reasons)
    probability_column: int = 1


def compile_graph(card: dict, onnx_bytes: bytes, dialect: Dialect = DUCKDB) -> Compiled:
    """Check the card, parse the graph and evaluate it symbolically (ModelNotExpressibleError if it cannot)."""
    import onnx

    contract = contract_from_card(card)  # the one card parser, shared with the scoring job
    inputs, output = list(contract.inputs), contract.probability_output
    try:
        model = onnx.load_from_string(onnx_bytes)
    except Exception as exc:  # the protobuf parser raises several types
        raise ConfigError(f"model file is not a readable ONNX graph ({type(exc).__name__})") from None
    compiler = Compiler(model, dialect)
    graph_inputs = [i.name for i in model.graph.input if i.name not in compiler.constants]
    if graph_inputs != inputs:
        raise ModelNotExpressibleError(f"graph inputs {graph_inputs} differ from the card's inputs {inputs}")
    input_columns = []
    for graph_input in model.graph.input:
        if graph_input.name in compiler.constants:
            continue
        tensor_type = graph_input.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        if tensor_type.elem_type != FLOAT or len(dims) != 2 or dims[1] != 1:
            raise ModelNotExpressibleError(f"graph input {graph_input.name!r} is not a [N, 1] float32 tensor")
        name = f"x_{len(input_columns)}"
        input_columns.append((name, graph_input.name))
        compiler.values[graph_input.name] = Tensor([name], "float")
    try:
        for node in _needed_nodes(model, output):
            if node.op_type == "Constant":
                from onnx import numpy_helper

                compiler.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
                continue
            compiler.run(node)
        if output not in compiler.values:
            raise ModelNotExpressibleError(f"the graph has no computable output {output!r}")
    except ModelNotExpressibleError as exc:
        raise ModelNotExpressibleError(
            f"export-sql cannot express model {card.get('spec', '?')}/{card.get('version', '?')} exactly in SQL: {exc}; "
            "score it with `mallscore score` (onnxruntime) instead"
        ) from None
    probabilities = compiler.values[output]
    column = int(card.get("onnx", {}).get("probability_column", 1))
    if not 0 <= column < len(probabilities.columns):
        raise ConfigError(f"probability_column {column} is outside the {len(probabilities.columns)} output columns")
    return Compiled(
        contract, input_columns, compiler.program.ctes, probabilities.columns[column], compiler.linear, column
    )


def _input_expr(column: str, dialect: Dialect = DUCKDB) -> str:
    """A feature rounded to float32 exactly as the graph's float input does, then widened to double.

    ``real`` is float32 in all three engines (Spark reads it as FLOAT).
    """
    return dialect.to_double(f"cast({dialect.quote(column)} as real)")


def _step_ctes(compiled: Compiled, first: str, prefix: str, dialect: Dialect) -> tuple[list[str], str]:
    """The graph's steps as CTEs, each adding columns to the previous one; returns (ctes, last CTE name)."""
    # PostgreSQL inlines CTEs and would paste each step's expressions into the next, repeating the
    # argmax/one-hot expressions many times; "offset 0" keeps every step a separate (streamed) subquery.
    fence = "\n    offset 0" if dialect.fence else ""
    ctes, previous = [], first
    for name, columns in compiled.steps:
        body = ",\n        ".join(f"{expr} as {col}" for col, expr in columns)
        ctes.append(f"{prefix}{name} as (\n    select\n        *,\n        {body}\n    from {previous}{fence}\n)")
        previous = prefix + name
    return ctes, previous


def compile_model_sql(
    card: dict,
    onnx_bytes: bytes,
    dialect: str = "duckdb",
    observed_score: str | None = OBSERVED_SCORE_COLUMN,
    groups: Any = None,
) -> str:
    """One SQL SELECT over the card's feature table: customer_id, p_high_spender, predicted_high_spender, segment,
    basis and top_reason (:mod:`mallscore.reasons`; null without the card's reference).

    The rows, the label and the segment follow the scoring job's rules, rendered
    by :mod:`mallscore.contract` (the same code that writes the job's SQL): rows
    the job quarantines are left out, and a customer whose ``observed_score``
    column is not NULL gets the tier of that score, any other the tier of its
    probability. ``observed_score=None`` is for a feature table without the
    column: every row then gets the model's tier (basis 'predicted'). Raises
    ModelNotExpressibleError (a ConfigError, exit 78) for graphs it cannot
    express exactly, and UsageError for an unknown dialect. With ``groups`` (a
    :class:`mallscore.groups.contract.GroupsContract`) it adds ``behaviour_group``, the nearest
    centre's name by :mod:`mallscore.groups.contract` (NULL without an observed score).
    """
    if dialect not in DIALECTS:
        raise UsageError(f"unknown SQL dialect {dialect!r}; choose one of {', '.join(DIALECTS)}")
    engine = DIALECT_SPECS[dialect]
    compiled = compile_graph(card, onnx_bytes, engine)
    contract = compiled.contract
    values = engine.literals()
    score = engine.to_double(engine.quote(observed_score) if observed_score else "null")
    ctes = [f"features as (\n    select * from {engine.quote(contract.feature_table)}\n)"]
    group_inputs, group_cols, group_final, source = [], "", "", "scored"
    if groups is not None and observed_score:
        from mallscore.groups.assign import export_group_sql

        group_inputs, group_cols, distances, name = export_group_sql(groups, values, score, engine, _input_expr)
        ctes_after = f"grouped as (\n    select *, {distances}\n    from scored\n)"
        group_final, source = f",\n        {name} as behaviour_group", "grouped"
    ctes.append(
        "inputs as (\n    select\n        customer_id,\n        "
        + f"{score} as observed_score,\n        "
        + ",\n        ".join(f"{_input_expr(graph_input, engine)} as {name}" for name, graph_input in compiled.inputs)
        + "".join(",\n        " + c for c in group_inputs)
        + f"\n    from features\n    where {passes_sql(contract, values)}\n)"
    )
    steps, previous = _step_ctes(compiled, "inputs", "", engine)
    ctes += steps
    reasons, top_reason = _reasons(card, onnx_bytes, contract, engine)
    ctes.append(
        f"scored as (\n    select customer_id, observed_score{group_cols}, {compiled.p_expr} as p_high_spender"
        f"{reasons}\n"
        f"    from {previous}\n)"
    )
    if source == "grouped":
        ctes.append(ctes_after)
    ctes.append(
        "final as (\n    select\n        customer_id,\n        p_high_spender,\n"
        f"        {predicted_sql(contract, values, 'p_high_spender')} as predicted_high_spender,\n"
        f"        {segment_sql(contract, values, 'p_high_spender', 'observed_score')} as segment,\n"
        f"        {basis_sql('observed_score')} as basis{group_final},\n"
        f"        {top_reason} as top_reason\n    from {source}\n)"
    )
    header = (
        f"-- mallscore export-sql: model {contract.spec}/{contract.version} "
        f"(onnx sha256 {str(card.get('onnx', {}).get('sha256', '?'))[:16]}...), dialect {dialect}.\n"
        "-- p_high_spender is computed in double precision from float32-rounded inputs; it matches onnxruntime\n"
        "-- within float32 rounding (~1e-7). Rows the nightly job would quarantine are left out; the segment\n"
        + (
            f"-- is the tier of {observed_score} where it is known (basis 'observed'), else of p_high_spender.\n"
            if observed_score
            else "-- is the tier of p_high_spender (exported without an observed score column).\n"
        )
    )
    return header + "with " + ",\n\n".join(ctes) + "\n\nselect * from final\n"


def _reasons(card: dict, onnx_bytes: bytes, contract: Contract, engine: Dialect) -> tuple[str, str]:
    """The columns ``scored`` adds for top_reason, and its expression (null without a reference)."""
    from mallscore.monitoring import reference_from_card
    from mallscore.reasons import contribution_columns, plan_reasons, top_reason_sql

    plan = plan_reasons(card, onnx_bytes, reference_from_card(card, contract), engine)
    if plan is None:
        return "", engine.literals().as_text("null")
    columns = [name for name, _ in plan.inputs] + [
        f"{expr} as {name}" for name, expr in contribution_columns(plan, engine)
    ]
    return "".join(f", {c}" for c in columns), top_reason_sql(plan, "p_high_spender", "observed_score", engine)


def compile_model_ctes(
    card: dict, onnx_bytes: bytes, source: str, columns: dict[str, str], prefix: str = "model_"
) -> tuple[str, str]:
    """The graph as DuckDB CTEs over ``source`` (rows that already passed the contract); returns (ctes, relation).

    ``columns`` maps each graph input (a card feature) to its column in
    ``source``. The CTEs keep every column of ``source`` and the last one,
    ``relation``, adds ``p_high_spender``: the same expressions as
    :func:`compile_model_sql` (so the same parity with onnxruntime), for
    ``mallscore score --engine sql`` to write with the job's own bookkeeping.
    """
    compiled = compile_graph(card, onnx_bytes)
    missing = [graph_input for _, graph_input in compiled.inputs if graph_input not in columns]
    if missing:
        raise ConfigError(f"no source column for the graph inputs {missing}")
    inputs = ",\n        ".join(
        f"{_input_expr(columns[graph_input])} as {name}" for name, graph_input in compiled.inputs
    )
    ctes = [f"{prefix}inputs as (\n    select\n        *,\n        {inputs}\n    from {DUCKDB.quote(source)}\n)"]
    steps, previous = _step_ctes(compiled, prefix + "inputs", prefix, DUCKDB)
    ctes += steps
    relation = prefix + "scored"
    ctes.append(f"{relation} as (\n    select *, {compiled.p_expr} as p_high_spender\n    from {previous}\n)")
    return ",\n\n".join(ctes), relation


def export_sql(
    models_dir,
    version: str | None = None,
    dialect: str = "duckdb",
    spec: str = "default",
    observed_score: str | None = OBSERVED_SCORE_COLUMN,
) -> str:
    """The SQL of a registered model (the champion of ``spec`` unless ``version`` is given), verified first."""
    from mallscore import registry
    from mallscore.groups.assign import load_groups

    path = registry.card_path(models_dir, version) if version else registry.champion_card_path(models_dir, spec)
    card, onnx_bytes = registry.verify_model(path)
    groups = load_groups(models_dir, session=False) if observed_score else None  # the groups champion, verified
    return compile_model_sql(card, onnx_bytes, dialect, observed_score, groups.contract if groups else None)
