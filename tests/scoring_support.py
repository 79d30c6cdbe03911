"""Helpers and fixtures for the scoring tests: small real models, seeded warehouses, the real CLI.

Models are real: scikit-learn StandardScaler + LogisticRegression fitted on
synthetic customers, converted with skl2onnx (one float32 input per feature, no
zipmap), with a card in the model contract's format and a correct sha256.
The fixtures score_settings and scored_setup live in conftest.py.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from mallscore import registry
from mallscore.settings import Settings

REPO = Path(__file__).resolve().parent.parent
FEATURES = ("age", "annual_income", "gender_female")
TIERS = [
    {"name": "top", "min_p": 0.7, "min_score": 75},
    {"name": "high", "min_p": 0.5, "min_score": 51},
    {"name": "low", "min_p": 0.0, "min_score": 0},
]
RANGES = {"age": (18.0, 70.0), "annual_income": (15.0, 140.0), "gender_female": (0.0, 1.0)}


def training_rows(n: int = 3000, seed: int = 0):
    """Synthetic labelled customers as (X float64 [n, 3], y) in FEATURES order."""
    import numpy as np

    from mallscore.synth import generate

    t = generate(n, seed)
    x = np.column_stack(
        [
            t.column("age").to_numpy().astype(float),
            t.column("annual_income").to_numpy().astype(float),
            (t.column("gender").cast("string").to_numpy(zero_copy_only=False) == "Female").astype(float),
        ]
    )
    y = (t.column("spending_score").to_numpy() > 50).astype(int)
    return x, y


def fit_pipeline(seed: int = 0, flip: bool = False):
    """A fitted StandardScaler + LogisticRegression on the synthetic rows (``flip`` inverts the labels)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = training_rows(seed=seed)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(x, 1 - y if flip else y)


def write_model(
    models_dir: Path,
    version: str = "v1",
    *,
    champion: bool = True,
    seed: int = 0,
    flip: bool = False,
    ranges: dict | None = None,
    threshold: float = 0.5,
    features: tuple[str, ...] = FEATURES,
    spec: str = "default",
    reference: bool = False,
    pipeline=None,
) -> dict:
    """Write ``models_dir/<spec>/<version>/{model.onnx, card.json}`` (and CHAMPION); return the card.

    ``reference`` adds the training population's reference distributions (drift,
    top_reason); ``pipeline`` replaces the default scaled logistic regression.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    pipe = pipeline if pipeline is not None else fit_pipeline(seed, flip)
    onnx_model = convert_sklearn(
        pipe,
        initial_types=[(name, FloatTensorType([None, 1])) for name in FEATURES],
        options={id(pipe[-1]): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    if features != FEATURES:  # rename graph inputs so the card can name a column the warehouse lacks
        for graph_input, name in zip(onnx_model.graph.input, features):
            old = graph_input.name
            graph_input.name = name
            for node in onnx_model.graph.node:
                node.input[:] = [name if i == old else i for i in node.input]
    data = onnx_model.SerializeToString()
    ranges = {**RANGES, **(ranges or {})}
    card = {
        "card_format": registry.CARD_FORMAT,
        "spec": spec,
        "version": version,
        "feature_table": "features_customer",
        "features": [
            {
                "name": name,
                "type": "float32",
                "min": ranges.get(name, (None, None))[0],
                "max": ranges.get(name, (None, None))[1],
                "values": [0.0, 1.0] if name == "gender_female" else None,
            }
            for name in features
        ],
        "onnx": {
            "file": "model.onnx",
            "sha256": hashlib.sha256(data).hexdigest(),
            "inputs": list(features),
            "input_shape": [None, 1],
            "input_type": "float32",
            "probability_output": "probabilities",
        },
        "threshold": threshold,
        "tiers": TIERS,
        "promotable": True,
    }
    if reference:
        import numpy as np

        from mallscore.monitoring import build_reference

        x, _ = training_rows(seed=seed)
        x32 = x.astype(np.float32).astype(np.float64)
        card["reference"] = build_reference(card["features"], x32, pipe.predict_proba(x32)[:, 1])
    registry.register(models_dir, card, {"model.onnx": data})
    if champion:
        registry.promote(models_dir, version, reason="test fixture")
    return registry.load_card(models_dir, version)


def seed_customers(settings: Settings, known: int = 300, new: int = 200, seed: int = 3) -> None:
    """Synthetic customers in a fresh warehouse: ``known`` with a spending score, ``new`` without."""
    from mallscore.synth import synth_customers
    from mallscore.warehouse import build, connect

    con = connect(settings.warehouse)
    try:
        build(con, check=False)
        if known:
            synth_customers(con, known, seed)
        if new:
            synth_customers(con, new, seed + 1, new=True)
    finally:
        con.close()


def query(settings: Settings, sql: str, params: object = None) -> list[tuple]:
    """Rows of ``sql`` on the warehouse, through a short read-only connection."""
    import duckdb

    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()
    finally:
        con.close()


def cli_env(settings: Settings, **extra: str) -> dict:
    """Environment for a real ``python -m mallscore`` subprocess against ``settings``."""
    env = {
        **os.environ,
        "MALLSCORE_WAREHOUSE": str(settings.warehouse),
        "MALLSCORE_MODELS_DIR": str(settings.models_dir),
        "MALLSCORE_LOCK_TIMEOUT": str(settings.lock_timeout),
        "PYTHONPATH": str(REPO),
    }
    env.pop("MALLSCORE_DEBUG", None)
    env.update(extra)
    return env


def run_cli(settings: Settings, *args: object, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess and return the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "mallscore", *map(str, args)],
        env=cli_env(settings, **extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
