"""The scoring benchmark's in-engine baseline computes in DOUBLE: no long decimal literal in its SQL.

DuckDB types ``-0.9209972588293478`` as a high-precision DECIMAL, and DECIMAL
arithmetic made the baseline about 1.8x slower than the honest in-engine CTAS,
so a 1.0 ratio against it meant nothing.
"""

from __future__ import annotations

import importlib.util
import math
import re

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mallscore.synth import generate, synth_customers
from tests.conftest import REPO

# a decimal literal (digits.digits) that is not the mantissa of an exponent form and not cast to double
BARE_DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\d.]*[eE][-+]?\d)(?!\d)(?!\s*::\s*double)")


def _bench_scoring():
    spec = importlib.util.spec_from_file_location("bench_scoring", REPO / "bench" / "bench_scoring.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _card_and_pipe(bench):
    t = generate(2_000, seed=3)
    x = np.column_stack(
        [
            t.column("age").to_numpy().astype(float),
            t.column("annual_income").to_numpy().astype(float),
            (t.column("gender").cast("string").to_numpy(zero_copy_only=False) == "Female").astype(float),
        ]
    )
    y = (t.column("spending_score").to_numpy() > 50).astype(int)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    card = {
        "spec": "default",
        "version": "bench-v1",
        "features": [
            {"name": "age", "type": "float32", "min": 12.0, "max": 120.0},
            {"name": "annual_income", "type": "float32", "min": 0.0},
            {"name": "gender_female", "type": "float32", "values": [0.0, 1.0]},
        ],
        "onnx": {"file": "model.onnx", "inputs": list(bench.FEATURES), "probability_output": "probabilities"},
        "threshold": 0.5,
        "tiers": bench.TIERS,
    }
    return card, pipe


def test_the_pattern_catches_what_it_must():
    assert BARE_DECIMAL.search("-0.9209972588293478 * (age - 38.47375)")
    assert BARE_DECIMAL.search("1.0 / (1.0 + exp(x))")
    assert not BARE_DECIMAL.search("-9.20997258829347800e-01 * (age - 3.847375e+01)")
    assert not BARE_DECIMAL.search("0.92::double + 1.5 :: DOUBLE".lower())


def test_baseline_sql_has_only_double_literals_and_matches_the_model(con):
    bench = _bench_scoring()
    card, pipe = _card_and_pipe(bench)
    sql, params = bench.ctas_logit_sql(card, pipe)
    assert not BARE_DECIMAL.findall(sql), sql
    synth_customers(con, 500, seed=4)
    con.execute(bench.BASELINE_TABLE_SQL)
    con.execute(sql, params)
    (ptype,) = con.execute(
        "select data_type from duckdb_columns() where table_name = 'bench_ctas_segments' "
        "and column_name = 'p_high_spender'"
    ).fetchone()
    assert ptype == "DOUBLE"
    columns = "select column_name, data_type from duckdb_columns() where table_name = ? order by column_index"
    assert con.execute(columns, ["bench_ctas_segments"]).fetchall() == con.execute(columns, ["segments"]).fetchall()
    rows = con.execute(
        "select f.age, f.annual_income, f.gender_female, b.p_high_spender "
        "from bench_ctas_segments b join features_customer f using (customer_id) order by customer_id"
    ).fetchall()
    x = np.array([r[:3] for r in rows], dtype=float)
    expected = pipe.predict_proba(x)[:, 1]
    got = np.array([r[3] for r in rows])
    assert len(rows) == 500 and math.isclose(float(np.max(np.abs(expected - got))), 0.0, abs_tol=1e-12)
