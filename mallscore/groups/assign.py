"""The groups champion on the scoring path: verified, opened in onnxruntime, assigning batches.

The nightly job asks :func:`load_groups` once (None without a groups champion: the run then
writes NULL groups exactly as before groups existed); the run's ``run_features`` view gains the
group inputs :func:`view_columns` renders (NULL where the row gets no group: no observed score,
or a feature the card rejects), and the streaming pass calls :func:`assign_batch` on each batch
it scores, in the same pass and transaction. A tampered groups model stops the run before
anything is written (exit 78), like a tampered classifier. No scikit-learn, pandas or matplotlib.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mallscore.errors import ConfigError
from mallscore.groups import SPEC
from mallscore.groups.contract import GroupsContract, eligible_sql, groups_contract_from_card, nearest_sql
from mallscore.ort_session import open_session
from mallscore.sqlvalues import Literals, Params, quote


@dataclass
class LoadedGroups:
    """A verified groups model: its card, contract and onnxruntime session."""

    card: dict
    contract: GroupsContract
    sha256: str
    session: Any

    @property
    def version(self) -> str:
        """The groups model version."""
        return self.contract.version


def load_groups(models_dir, *, session: bool = True) -> LoadedGroups | None:
    """The groups champion, verified (ConfigError if tampered), or None when there is none."""
    from mallscore import registry

    version = registry.champion(models_dir, SPEC)
    if version is None:
        return None
    card, data = registry.verify_model(registry.champion_card_path(models_dir, SPEC))
    gc = groups_contract_from_card(card)
    if not session:
        return LoadedGroups(card, gc, hashlib.sha256(data).hexdigest(), None)
    # two features and a few centres: one thread beats a pool that competes with DuckDB's threads and the
    # classifier's (256Ki rows: 24 ms against 37 ms with the default pool)
    sess = open_session(data, f"groups model {gc.version}", threads=1)
    inputs = [i.name for i in sess.get_inputs()]
    outputs = {o.name: o.type for o in sess.get_outputs()}
    if inputs != gc.feature_names or outputs.get(gc.label_output) != "tensor(int64)":
        raise ConfigError(
            f"groups model {gc.version}: the ONNX graph does not take {gc.feature_names} or lacks its label"
        )
    return LoadedGroups(card, gc, hashlib.sha256(data).hexdigest(), sess)


def group_column(j: int) -> str:
    """The internal name of the groups card's j-th feature in the run's relations."""
    return f"__group_{j}"


def check_group_columns(gc: GroupsContract, columns: dict[str, str]) -> None:
    """ConfigError (78) naming a groups feature the feature table lacks."""
    for name in gc.feature_names:
        if name not in columns:
            raise ConfigError(
                f"the feature table has no column {name!r}, which groups model {gc.version} needs; nothing was scored"
            )


def view_columns(gc: GroupsContract, values: Params) -> tuple[list[str], list[str]]:
    """(columns for run_features' first CTE, for its last): the group inputs, float32 or NULL (no group)."""
    inner = [f"cast({quote(f)} as double) as {quote(group_column(j))}" for j, f in enumerate(gc.feature_names)]
    cols = [group_column(j) for j in range(len(gc.features))]
    ok = eligible_sql(gc, values, cols, "observed_score")
    outer = [f"case when {ok} then cast({quote(c)} as float) end as {quote(c)}" for c in cols]
    return inner, outer


def assign_batch(groups: LoadedGroups | None, batch: Any) -> Any:
    """The batch's groups as an Arrow dictionary array of names (NULL where the row gets no group)."""
    import numpy as np
    import pyarrow as pa

    n = batch.num_rows
    if groups is None:
        return pa.nulls(n, type=group_type())
    first = batch.column(group_column(0))
    if first.null_count == n:
        return pa.nulls(n, type=group_type())
    feeds = {}
    for j, name in enumerate(groups.contract.feature_names):
        col = batch.column(group_column(j))
        values = np.frombuffer(col.buffers()[1], dtype=np.float32, count=len(col), offset=col.offset * 4)
        if col.null_count:
            values = np.where(np.isfinite(values), values, np.float32(0))  # slots of NULL rows: never used
        feeds[name] = values.reshape(-1, 1)
    label = groups.session.run([groups.contract.label_output], feeds)[0].astype(np.int32)
    validity = first.is_valid().buffers()[1] if first.null_count else None
    indices = pa.Array.from_buffers(pa.int32(), n, [validity, pa.py_buffer(label)], null_count=first.null_count)
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(groups.contract.names), pa.string()))


def group_names_sql(gc: GroupsContract, columns: list[str], values: Params | None = None) -> tuple[str, str]:
    """(distance columns, name expression) for the group of float32 ``columns`` (NULL columns: no group).

    For SQL that assigns groups itself (``score --engine sql``, ``export-sql``): a CTE selects the
    distance columns ``__gd_i`` and the next one the name expression.
    """
    values = values if values is not None else Literals()
    distances, name = nearest_sql(gc, values, [f"cast({c} as double)" for c in columns])
    cols = ", ".join(f"{d} as __gd_{i}" for i, d in enumerate(distances))
    return cols, f"case when {columns[0]} is not null then {name} end"


def group_type() -> Any:
    """The Arrow type of the streamed ``behaviour_group`` column: names, dictionary-encoded."""
    import pyarrow as pa

    return pa.dictionary(pa.int32(), pa.string())


def groups_scored_sql(groups: LoadedGroups | None, model_ctes: str, relation: str, keep: Sequence[str] = ()) -> str:
    """``run_scored`` of ``score --engine sql``: the compiled classifier's rows with their group, in SQL.

    ``keep``: more columns of ``relation`` to pass through (the features, for top_reason).
    """
    kept = "".join(f"{quote(c)}, " for c in keep)
    if groups is None:
        return (
            f"with {model_ctes}\nselect customer_id, updated_at, observed_score, {kept}p_high_spender as p, "
            f"cast(null as varchar) as behaviour_group from {relation}"
        )
    distances, name = group_names_sql(
        groups.contract, [quote(group_column(j)) for j in range(len(groups.contract.features))]
    )
    return (
        f"with {model_ctes},\ngroups_distances as (select *, {distances} from {relation})\n"
        f"select customer_id, updated_at, observed_score, {kept}p_high_spender as p, {name} as behaviour_group "
        "from groups_distances"
    )


def group_names(groups: LoadedGroups | None, rows: list[dict]) -> dict[int, str]:
    """``{customer_id: group name}`` for ``rows`` of ``run_candidates`` (``rescore``); rows without a group are left out."""
    import numpy as np

    if groups is None:
        return {}
    eligible = [r for r in rows if r.get(group_column(0)) is not None]
    if not eligible:
        return {}
    feeds = {
        name: np.array([[r[group_column(j)]] for r in eligible], dtype=np.float32)
        for j, name in enumerate(groups.contract.feature_names)
    }
    labels = groups.session.run([groups.contract.label_output], feeds)[0]
    return {r["customer_id"]: groups.contract.names[int(i)] for r, i in zip(eligible, labels)}


def export_group_sql(gc: GroupsContract, values: Params, score: str, engine: Any, input_expr: Any):
    """For ``export-sql``: (input columns, their names for the next CTE, distance columns, name expression).

    The inputs are the card's features rounded to float32 as the graph does (NULL where the row gets
    no group: ``score`` unobserved or a feature outside the card); the name is the nearest centre's.
    """
    ok = eligible_sql(gc, values, gc.feature_names, score)
    cols = [f"__group_{j}" for j in range(len(gc.features))]
    inputs = [f"case when {ok} then {input_expr(f, engine)} end as {c}" for f, c in zip(gc.feature_names, cols)]
    distances, name = nearest_sql(gc, values, cols)
    dist_cols = ", ".join(f"{d} as __gd_{i}" for i, d in enumerate(distances))
    return inputs, "".join(", " + c for c in cols), dist_cols, f"case when {cols[0]} is not null then {name} end"
