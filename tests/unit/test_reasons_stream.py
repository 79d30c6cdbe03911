"""The streamed top_reason (numpy) equals the SQL view's on the same rows, tricky rows included."""

from __future__ import annotations

from dataclasses import replace

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from mallscore import registry
from mallscore.contract import contract_from_card, feature_column
from mallscore.monitoring import reference_from_card
from mallscore.reasons import ReasonPlan, plan_reasons, run_view_sql
from mallscore.reasons_stream import CHUNK_ROWS, stream_reasons
from tests.jobs.test_monitoring import _binned_pipeline
from tests.scoring_support import write_model


def _plan(tmp_path, kind: str) -> ReasonPlan:
    """The model's plan, with a threshold and an age mean that a float32 can equal (so p == threshold and
    age == mean really occur; the card's own mean is the training rows' average, rarely a float32)."""
    pipe = _binned_pipeline() if kind == "bins" else None
    write_model(tmp_path, "v1", threshold=0.5, reference=True, pipeline=pipe)
    card, data = registry.verify_model(registry.card_path(tmp_path, "v1"))
    contract = contract_from_card(card)
    plan = plan_reasons(card, data, reference_from_card(card, contract))
    age = replace(plan.features[0], mean=float(np.float32(38.5)))
    return replace(plan, features=(age, *plan.features[1:]))


def _rows(plan: ReasonPlan, n: int = 5000) -> tuple[list[np.ndarray], np.ndarray, pa.Array]:
    """Random customers, then the hard ones: at the mean (every contribution 0: a tie), on every bin edge and
    either side of it, an unknown category, p exactly at the threshold and either side, observed scores."""
    rng = np.random.default_rng(7)
    ages = [rng.integers(18, 71, n).astype(np.float32)]
    incomes = [rng.integers(15, 138, n).astype(np.float32)]
    genders = [rng.integers(0, 2, n).astype(np.float32)]
    means = [np.float32(b.mean) for b in plan.features]
    edges = sorted({float(c) for t in plan.terms for c in _cuts(t)})
    special = [means[0], np.nextafter(means[0], np.float32(0)), np.nextafter(means[0], np.float32(999)), 18, 70]
    special += [np.float32(e) for e in edges] + [np.nextafter(np.float32(e), np.float32(0)) for e in edges]
    for a in special:
        for i in (means[1], np.float32(15), np.float32(137), *[np.float32(e) for e in edges]):
            for g in (0.0, 1.0, float(means[2]), 0.5):
                ages.append(np.array([a], np.float32))
                incomes.append(np.array([i], np.float32))
                genders.append(np.array([g], np.float32))
    inputs = [np.concatenate(v) for v in (ages, incomes, genders)]
    m = len(inputs[0])
    t = np.float32(plan.threshold)
    p = rng.random(m).astype(np.float32)
    p[n::3] = t
    p[n + 1 :: 3] = np.nextafter(t, np.float32(0))
    p[n + 2 :: 7] = np.nextafter(t, np.float32(1))
    observed = pa.array([int(v) if k % 11 == 0 else None for k, v in enumerate(rng.integers(1, 101, m))], pa.int32())
    return inputs, p, observed


def _cuts(term: str) -> list[str]:
    import re

    return re.findall(r"x_\d+ < cast\(([-+0-9.e]+) as", term)


def _sql_reasons(plan: ReasonPlan, inputs, p, observed) -> list:
    names = [g for _, g in plan.inputs]
    columns = {g: feature_column(i) for i, g in enumerate(names)}
    table = pa.table(
        {
            "customer_id": np.arange(len(p)),
            "observed_score": observed,
            **{feature_column(i): v for i, v in enumerate(inputs)},
            "p": p,
        }
    )
    con = duckdb.connect()
    try:
        con.register("run_scored", table)
        con.execute(run_view_sql(plan, columns))
        return [r[0] for r in con.execute("select top_reason from run_reasoned order by customer_id").fetchall()]
    finally:
        con.close()


@pytest.mark.parametrize("kind", ["scale", "bins"])
def test_the_streamed_reason_equals_the_sql_view_on_tricky_rows(tmp_path, kind):
    plan = _plan(tmp_path, kind)
    reasons = stream_reasons(plan)
    assert reasons is not None
    inputs, p, observed = _rows(plan)
    assert len(p) > CHUNK_ROWS / 4
    streamed = reasons.column([v.reshape(-1, 1) for v in inputs], p, observed).to_pylist()
    expected = _sql_reasons(plan, inputs, p, observed)
    assert streamed == expected
    assert sum(r is None for r in expected) > len(p) // 11  # observed rows, and the unknown category 0.5
    assert len(set(expected) - {None}) >= 4
    assert "age: about average" in expected


def test_rows_spanning_several_chunks_keep_their_order(tmp_path):
    plan = _plan(tmp_path, "scale")
    reasons = stream_reasons(plan)
    rng = np.random.default_rng(3)
    n = 2 * CHUNK_ROWS + 17
    inputs = [rng.integers(18, 71, n).astype(np.float32), rng.integers(15, 138, n).astype(np.float32)]
    inputs.append(rng.integers(0, 2, n).astype(np.float32))
    p = rng.random(n).astype(np.float32)
    observed = pa.nulls(n, pa.int32())
    assert reasons.column(inputs, p, observed).to_pylist() == _sql_reasons(plan, inputs, p, observed)


@pytest.mark.parametrize(
    "term",
    ["exp(x_0)", "x_0 / x_1", "x_0 / cast(0.0 as double precision)", "cast(x_0 as real)", "x_0 ? 1"],
)
def test_sql_outside_the_exact_grammar_keeps_the_view(tmp_path, term):
    plan = _plan(tmp_path, "scale")
    changed = replace(plan, terms=[term, *plan.terms[1:]])
    assert stream_reasons(changed) is None
    assert stream_reasons(None) is None
