"""Ad-hoc rescoring: a few customers scored now by the champion, with the nightly job's rules.

The customers are selected, validated and segmented by the same relations and
statements as a run (:mod:`mallscore.scoring.relations`, ``sql/scoring/``);
only the scoring itself happens in memory. With ``write`` the customers are
scored by a real ``adhoc`` run first, so the warehouse and the answer agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from mallscore.contract import describe_ids, feature_column
from mallscore.errors import BadInputError, UsageError
from mallscore.groups.assign import group_names, load_groups
from mallscore.scoring.model import LoadedModel, load_model, predict
from mallscore.scoring.relations import feature_columns, prepare
from mallscore.settings import Settings


def rescore_customers(settings: Settings, customer_ids: Sequence[int], *, write: bool = False) -> dict:
    """Score the given customers now; with ``write`` update ``segments`` as an ``adhoc`` run.

    Returns ``{"model_version", "run_id", "customers": [...], "unknown": [...]}``;
    each customer has ``status`` scored or rejected (with ``reason``). Unknown
    ids are listed, not fatal; BadInputError (65) when no id is known.
    """
    ids = sorted({int(i) for i in customer_ids})
    if not ids:
        raise UsageError("give at least one customer id")
    model = load_model(settings)
    model.groups = load_groups(settings.models_dir)  # None without a groups champion: behaviour_group NULL
    run = None
    if write:
        from mallscore.scoring.run import score_customers

        run = score_customers(settings, mode="adhoc", model_version=model.version, customer_ids=ids)
    from mallscore.warehouse import connect

    con = connect(settings.warehouse, read_only=True, lock_timeout=settings.lock_timeout)
    try:
        con.execute("set enable_progress_bar = false")
        customers = _score_ids(con, model, ids)
    finally:
        con.close()
    known = {c["customer_id"] for c in customers}
    unknown = [i for i in ids if i not in known]
    if not customers:
        raise BadInputError(f"no such customer: {describe_ids(unknown)} (none of the ids is in the warehouse)")
    return {
        "model_version": model.version,
        "run_id": run["run_id"] if run else None,
        "customers": customers,
        "unknown": unknown,
    }


def _score_ids(con: duckdb.DuckDBPyConnection, model: LoadedModel, ids: list[int]) -> list[dict]:
    """Validate, score and segment a few customers in memory (no Arrow, no write)."""
    import numpy as np

    contract = model.contract
    columns = feature_columns(con, contract.feature_table)
    prepare(con, contract, mode="adhoc", model_version=model.version, columns=columns, ids=ids, groups=model.groups)
    cursor = con.execute("select * from run_candidates order by customer_id")
    columns = [d[0] for d in cursor.description]
    rows = [dict(zip(columns, r)) for r in cursor.fetchall()]
    valid = [r for r in rows if r["reason"] is None]
    result = {
        r["customer_id"]: {
            "customer_id": r["customer_id"],
            "status": "rejected",
            "reason": r["reason"],
            "p_high_spender": None,
            "predicted_high_spender": None,
            "segment": None,
            "basis": None,
            "behaviour_group": None,
            "top_reason": None,
        }
        for r in rows
    }
    if valid:
        feeds = {
            n: np.array([[r[feature_column(i)]] for r in valid], dtype=np.float32)
            for i, n in enumerate(contract.inputs)
        }
        p = predict(model, feeds)
        seg_query = (
            "with scored as (select cast(unnest($cid) as bigint) as customer_id, cast(unnest($p) as double) as p, "
            "cast(unnest($score) as double) as observed_score) "
            "select customer_id, p, p >= $threshold, mallscore_segment(p, observed_score), "
            "case when observed_score is not null then 'observed' else 'predicted' end from scored"
        )
        seg_params = {
            "threshold": contract.threshold,
            "cid": [r["customer_id"] for r in valid],
            "p": [float(x) for x in p],
            "score": [r["observed_score"] for r in valid],
        }
        groups = group_names(model.groups, valid)
        reasons = _top_reasons(con, model, valid, p)
        for cid, prob, predicted, segment, basis in con.execute(seg_query, seg_params).fetchall():
            result[cid].update(
                status="scored",
                p_high_spender=prob,
                predicted_high_spender=predicted,
                segment=segment,
                basis=basis,
                behaviour_group=groups.get(cid),
                top_reason=reasons.get(cid),
            )
    return [result[i] for i in sorted(result)]


def _top_reasons(con: duckdb.DuckDBPyConnection, model: LoadedModel, valid: list[dict], p) -> dict:
    """Each scored customer's top reason, through the run's own view (``run_reasoned`` over ``run_scored``)."""
    n = len(model.contract.features)
    features = "".join(f", cast(unnest($f{i}) as float) as {feature_column(i)}" for i in range(n))
    params = {
        "cid": [r["customer_id"] for r in valid],
        "score": [r["observed_score"] for r in valid],
        "p": [float(x) for x in p],
        **{f"f{i}": [r[feature_column(i)] for r in valid] for i in range(n)},
    }
    con.execute(
        "create or replace temp table run_scored as select cast(unnest($cid) as bigint) as customer_id, "
        f"cast(null as timestamp) as updated_at, cast(unnest($score) as double) as observed_score{features}, "
        "cast(unnest($p) as float) as p",
        params,
    )
    con.execute(model.reasons_sql)
    return dict(con.execute("select customer_id, top_reason from run_reasoned").fetchall())
