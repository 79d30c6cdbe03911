"""The job's data checks: what it refuses to train on, and the training-data fingerprint."""

import numpy as np
import pandas as pd
import pytest

from mallscore.errors import BadInputError, InputMissingError
from mallscore.specs import get_spec
from mallscore.training.job import fingerprint, read_training_set, validate_frame

SPEC = get_spec("default")


def _frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1),
            "age": rng.integers(18, 70, n).astype(float),
            "annual_income": rng.integers(15, 137, n).astype(float),
            "gender_female": (rng.random(n) < 0.5).astype(float),
            "spending_score": rng.integers(1, 101, n).astype(float),
            "high_spender": np.tile([0, 1], n // 2),
        }
    )


def test_fingerprint_ignores_row_order_and_sees_any_change():
    frame = _frame()
    shuffled = frame.sample(frac=1.0, random_state=1)
    assert fingerprint(frame, SPEC) == fingerprint(shuffled, SPEC)
    changed = frame.copy()
    changed.loc[5, "age"] += 1
    assert fingerprint(changed, SPEC) != fingerprint(frame, SPEC)
    relabelled = frame.copy()
    relabelled.loc[5, "high_spender"] = 1 - relabelled.loc[5, "high_spender"]
    assert fingerprint(relabelled, SPEC) != fingerprint(frame, SPEC)


def test_validate_frame_refuses_what_cannot_be_trained_on():
    validate_frame(_frame(), SPEC)
    with pytest.raises(InputMissingError):
        validate_frame(_frame().iloc[:0], SPEC)
    one_class = _frame()
    one_class["high_spender"] = 1
    with pytest.raises(BadInputError, match="at least 10"):
        validate_frame(one_class, SPEC)
    missing = _frame()
    missing.loc[3, "annual_income"] = np.nan
    with pytest.raises(BadInputError, match="annual_income has 1 missing"):
        validate_frame(missing, SPEC)


def test_read_training_set_from_a_real_warehouse(con):
    from mallscore.synth import synth_customers

    assert read_training_set(con, SPEC).empty
    synth_customers(con, 50, seed=2)
    synth_customers(con, 10, seed=3, new=True)  # no score: not in the training set
    frame = read_training_set(con, SPEC)
    assert len(frame) == 50 and frame["customer_id"].is_monotonic_increasing
    assert {"age", "annual_income", "gender_female", "high_spender"} <= set(frame.columns)


def test_read_training_set_without_the_view_is_input_missing(tmp_path):
    import duckdb

    con = duckdb.connect(str(tmp_path / "bare.duckdb"))
    with pytest.raises(InputMissingError, match="mallscore features"):
        read_training_set(con, SPEC)
    con.close()


def test_a_large_training_set_is_sampled_deterministically(con):
    from mallscore.specs import get_spec
    from mallscore.synth import synth_customers
    from mallscore.training.job import read_training_set

    synth_customers(con, 300, seed=4)
    spec = get_spec("default")
    whole = read_training_set(con, spec)
    first = read_training_set(con, spec, max_rows=100)
    again = read_training_set(con, spec, max_rows=100)
    assert len(whole) == 300 and whole.attrs["population_rows"] == 300
    assert len(first) == 100 and first.attrs["population_rows"] == 300
    assert first.equals(again)
    assert first.customer_id.is_monotonic_increasing and first.customer_id.is_unique
    assert 0.25 < first.high_spender.mean() < 0.75  # a spread sample, not the first ids
    assert first.customer_id.max() > 200
