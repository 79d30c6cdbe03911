"""Loading a model for scoring: verified before anything reads it, then onnxruntime or compiled SQL.

The card and the ONNX bytes are checked against their sha256 by the registry
before either is parsed; the card becomes a :class:`~mallscore.contract.Contract`
(the one card parser) and the ONNX graph must take exactly the card's inputs.
scikit-learn and skl2onnx are never imported here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from mallscore.contract import Contract, contract_from_card, feature_column
from mallscore.errors import ConfigError, UsageError
from mallscore.ort_session import open_session
from mallscore.settings import Settings

ENGINES = ("onnx", "sql")
MODEL_SOURCE = "run_valid"  # the valid candidates the compiled model reads (engine sql)


@dataclass
class LoadedModel:
    """A verified model: its card, the contract it implies, and how it scores.

    ``engine`` onnx: ``session`` is an onnxruntime session. ``engine`` sql:
    ``sql`` is (CTEs, relation) compiled from the ONNX graph by
    :func:`mallscore.sqlexport.compile_model_ctes`, reading the contract's
    valid rows from :data:`MODEL_SOURCE`; onnxruntime is never loaded.
    """

    card: dict
    contract: Contract
    sha256: str
    session: Any
    engine: str = "onnx"
    sql: tuple[str, str] | None = None
    groups: Any = None  # the groups champion (mallscore.groups.assign.LoadedGroups), or None
    reference: Any = None  # the card's reference distributions (mallscore.monitoring), None on older cards
    reasons_sql: str = ""  # the view run_reasoned over run_scored (mallscore.reasons), top_reason as text
    reason_plan: Any = None  # mallscore.reasons.ReasonPlan, None without a reference
    reason_columns: dict[str, str] = field(default_factory=dict)  # graph input -> its run_scored column

    @property
    def version(self) -> str:
        """The model version (the card's)."""
        return self.contract.version

    @property
    def reason_labels(self) -> tuple[str, ...]:
        """Every top_reason the reasons view can give (for the column's ENUM, mallscore.labels)."""
        from mallscore.reasons import labels

        return labels(self.reason_plan)

    def with_label_type(self, label_type: str | None) -> LoadedModel:
        """This model with ``reasons_sql`` giving top_reason as ``label_type`` (the column's ENUM) when there is one."""
        if label_type is None or self.reason_plan is None:
            return self
        from mallscore.reasons import run_view_sql

        return replace(self, reasons_sql=run_view_sql(self.reason_plan, self.reason_columns, label_type))


def _verified_model(settings: Settings, version: str | None) -> tuple[dict, bytes]:
    """The champion's (or ``version``'s) card and ONNX bytes, both sha256-checked before anything loads."""
    from mallscore import registry

    path = (
        registry.champion_card_path(settings.models_dir)
        if version is None
        else registry.card_path(settings.models_dir, version)
    )
    return registry.verify_model(path)


def load_model(settings: Settings, version: str | None = None, engine: str = "onnx") -> LoadedModel:
    """Verify the model's checksum, check its card, then open an onnxruntime session on it (or compile it to SQL)."""
    if engine not in ENGINES:
        raise UsageError(f"unknown scoring engine {engine!r}; use {' or '.join(ENGINES)}")
    card, data = _verified_model(settings, version)
    if engine == "onnx":
        return session_model(card, data)
    from mallscore.sqlexport import compile_model_ctes

    contract = contract_from_card(card)
    columns = {name: feature_column(i) for i, name in enumerate(contract.inputs)}
    sql = compile_model_ctes(card, data, MODEL_SOURCE, columns)
    sha = hashlib.sha256(data).hexdigest()
    return LoadedModel(card, contract, sha, None, "sql", sql, **_monitoring(card, data, contract))


def session_model(card: dict, data: bytes) -> LoadedModel:
    """An onnxruntime session on ``data`` checked against ``card``'s contract (the caller verified both)."""
    contract = contract_from_card(card)
    monitoring = _monitoring(card, data, contract)
    session = open_session(data, f"model {contract.version}")
    _check_session(contract, session)
    return LoadedModel(card, contract, hashlib.sha256(data).hexdigest(), session, **monitoring)


def _monitoring(card: dict, data: bytes, contract: Contract) -> dict[str, Any]:
    """LoadedModel's reference (None on older cards), reasons_sql (compiled from the graph) and reason plan."""
    from mallscore.monitoring import reference_from_card
    from mallscore.reasons import plan_reasons, run_view_sql

    reference = reference_from_card(card, contract)
    plan = plan_reasons(card, data, reference) if reference is not None else None
    columns = {name: feature_column(i) for i, name in enumerate(contract.inputs)}
    return {
        "reference": reference,
        "reasons_sql": run_view_sql(plan, columns),
        "reason_plan": plan,
        "reason_columns": columns,
    }


def _check_session(contract: Contract, session: Any) -> None:
    """The graph takes exactly the card's inputs as float tensors and has its probability output."""
    inputs = {i.name: i for i in session.get_inputs()}
    where = f"model {contract.version}"
    for name in contract.inputs:
        if name not in inputs:
            raise ConfigError(f"{where}: the ONNX graph has no input {name!r} that its card lists")
        if inputs[name].type != "tensor(float)":
            raise ConfigError(f"{where}: ONNX input {name!r} is {inputs[name].type}, expected tensor(float)")
    extra = sorted(set(inputs) - set(contract.inputs))
    if extra:
        raise ConfigError(f"{where}: the ONNX graph has inputs the card does not list: {extra}")
    outputs = {o.name: o for o in session.get_outputs()}
    output = outputs.get(contract.probability_output)
    if output is None:
        raise ConfigError(f"{where}: the ONNX graph has no output {contract.probability_output!r}")
    if output.type != "tensor(float)" or len(output.shape or []) != 2 or output.shape[1] not in (2, None):
        raise ConfigError(
            f"{where}: the card's probability output {contract.probability_output!r} is {output.type} "
            f"{output.shape}, expected a float tensor of shape [N, 2]"
        )


def predict(model: LoadedModel, feeds: dict[str, Any]) -> Any:
    """P(high spender) as float32 for finite float32 ``[n, 1]`` feeds, one per feature."""
    import numpy as np

    for name, values in feeds.items():
        if not np.isfinite(values).all():  # the SQL contract already rejected these; never feed them
            raise RuntimeError(f"internal error: a non-finite {name} reached the scorer")
    out = model.session.run([model.contract.probability_output], feeds)[0]
    return np.ascontiguousarray(out[:, 1])
