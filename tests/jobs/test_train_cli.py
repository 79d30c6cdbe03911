"""Training end to end through the real CLI, on a synthetic warehouse in a temp dir."""

import base64
import hashlib
import json
import re

import numpy as np
import onnxruntime as ort
import pytest

from mallscore import registry
from mallscore.training.report import FIGURES

CARD_KEYS = {
    "card_format",
    "spec",
    "version",
    "created_at",
    "features",
    "feature_table",
    "label",
    "onnx",
    "threshold",
    "tiers",
    "leakage",
    "promotable",
    "metrics",
    "odds_ratios",
    "best_params",
    "n_configs",
    "training_data",
    "library_versions",
    "git_commit",
    "card_sha256",
}
JSON_KEYS = {
    "model_version",
    "spec",
    "features",
    "n_configs",
    "best_params",
    "cv",
    "nested_cv_roc_auc",
    "test",
    "odds_ratios",
    "leakage",
    "threshold",
    "onnx",
    "promoted",
    "report",
}


@pytest.fixture
def warehouse(cli):
    out = cli("synth", "--rows", "300", "--seed", "11")
    assert out.returncode == 0, out.stderr
    return cli


def _p_from_parameters(params: dict, row: dict) -> float:
    if params["preprocessing"] == "scale":
        z = [(row[c] - m) / s for c, m, s in zip(params["columns"], params["mean"], params["scale"])]
    else:
        z = []
        for name, edges in params["edges"].items():
            k = int(np.searchsorted(edges[1:-1], row[name], side="right"))
            z.extend(1.0 if j == k else 0.0 for j in range(len(edges) - 1))
        z.extend(row[name] for name in params["passthrough"])
    logit = params["intercept"] + sum(c * v for c, v in zip(params["coef"], z))
    return 1 / (1 + np.exp(-logit))


def _train(cli, *args):
    return cli("train", "--budget", "quick", *args)


def test_default_trains_registers_and_becomes_champion(warehouse, settings):
    out = _train(warehouse, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert JSON_KEYS <= set(result)
    assert result["spec"] == "default" and result["features"] == ["age", "annual_income", "gender_female"]
    assert result["leakage"] == [] and result["promoted"] is True
    assert 0.5 < result["nested_cv_roc_auc"]["mean"] <= 1.0 and result["nested_cv_roc_auc"]["std"] >= 0
    assert set(result["cv"]) == {"accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc"}
    assert np.array(result["test"]["confusion_matrix"]).sum() == 60  # 20% of 300
    assert result["onnx"]["max_abs_diff"] <= 1e-5 and result["onnx"]["label_flips"] == 0
    assert registry.champion(settings.models_dir) == result["model_version"]
    version_dir = registry.find_model(settings.models_dir, result["model_version"])
    modes = {
        p.name: p.stat().st_mode & 0o777 for p in [version_dir, *version_dir.iterdir(), version_dir.parent / "CHAMPION"]
    }
    assert modes == {
        version_dir.name: 0o700,
        "model.onnx": 0o600,
        "card.json": 0o600,
        "report.html": 0o600,
        "CHAMPION": 0o600,
    }  # owner only

    card_path = registry.card_path(settings.models_dir, result["model_version"])
    card = json.loads(card_path.read_text())
    assert CARD_KEYS <= set(card)
    assert card["card_sha256"] == registry.card_digest(card)
    model = (card_path.parent / "model.onnx").read_bytes()
    assert card["onnx"]["sha256"] == hashlib.sha256(model).hexdigest() == result["onnx"]["sha256"]
    assert [f["name"] for f in card["features"]] == card["onnx"]["inputs"] == result["features"]
    assert card["features"][2]["values"] == [0.0, 1.0] and card["features"][0]["min"] == 12.0
    assert card["label"] == {"name": "high_spender", "definition": "spending_score > 50"}
    assert card["feature_table"] == "features_customer" and card["promotable"] is True
    assert [t["name"] for t in card["tiers"]] == ["premium", "loyalty", "nurture", "low_priority"]
    assert card["tiers"][-1]["min_p"] == 0 and [t["min_score"] for t in card["tiers"]] == [75, 51, 35, 1]
    mins = [t["min_p"] for t in card["tiers"]]
    assert mins == sorted(mins, reverse=True)
    assert card["training_data"]["rows"] == 300 and card["training_data"]["population_rows"] == 300

    # the card is enough to score: inputs by name, probability output, threshold
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feeds = {
        name: np.array([[30.0], [60.0], [1.0]][i : i + 1], dtype=np.float32)
        for i, name in enumerate(card["onnx"]["inputs"])
    }
    (probs,) = session.run([card["onnx"]["probability_output"]], feeds)
    assert probs.shape == (1, 2) and abs(probs.sum() - 1) < 1e-5
    # the card's plain parameters give the same probability (what an ONNX->SQL compiler needs)
    assert _p_from_parameters(
        card["model"]["parameters"], {"age": 30.0, "annual_income": 60.0, "gender_female": 1.0}
    ) == pytest.approx(probs[0, 1], abs=1e-5)

    html = (card_path.parent / "report.html").read_text()
    for fig_id, _ in FIGURES:
        match = re.search(
            rf'<figure id="{fig_id}"><img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html
        )
        assert match, fig_id
        assert base64.b64decode(match.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
    assert "What this means for marketing" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # opens offline
    assert f"{result['nested_cv_roc_auc']['mean']:.3f}" in html
    assert 'class="leak-warning"' not in html


def test_seed_without_flag_exits_65_and_registers_nothing(warehouse, settings):
    out = _train(warehouse, "--spec", "seed")
    assert out.returncode == 65, out.stderr
    assert "spending_score" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (settings.models_dir / "seed").exists()


def test_seed_with_flag_trains_is_flagged_and_never_promoted(warehouse, settings):
    out = _train(warehouse, "--spec", "seed", "--allow-leakage", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["leakage"] == ["spending_score"] and result["promoted"] is False
    assert result["test"]["accuracy"] >= 0.95
    assert registry.champion(settings.models_dir, "seed") is None
    card = registry.load_card(settings.models_dir, result["model_version"])
    assert card["promotable"] is False and card["leakage"]["flagged"] == ["spending_score"]
    assert card["leakage"]["per_feature"]["spending_score"]["perfect_split"] is True
    html = open(result["report"]).read()
    # a warning above every metric section
    for section in ("marketing", "holdout", "cv", "odds", "calibration", "tiers"):
        head = html.index(f'<h2 id="{section}">')
        assert html.index('class="leak-warning"', head) < html.index("<h2", head + 1), section
    assert "mean nothing for new customers" in html

    promoted = warehouse("models", "promote", result["model_version"])
    assert promoted.returncode == 65 and "leaking" in promoted.stderr


def test_models_list_show_promote_and_rollback(warehouse, settings):
    first = json.loads(_train(warehouse, "--json").stdout)["model_version"]
    second_out = _train(warehouse, "--no-promote", "--json")
    second = json.loads(second_out.stdout)
    assert second["promoted"] is False and "no-promote" in second["promotion_reason"]
    assert registry.champion(settings.models_dir) == first

    listed = json.loads(warehouse("models", "list", "--json").stdout)
    assert {r["version"]: r["champion"] for r in listed} == {first: True, second["model_version"]: False}
    assert "*" in warehouse("models", "list").stdout

    shown = json.loads(warehouse("models", "show", second["model_version"], "--json").stdout)
    assert shown["version"] == second["model_version"] and shown["card_sha256"]
    assert "nested AUC" in warehouse("models", "show", first).stdout

    assert warehouse("models", "promote", second["model_version"]).returncode == 0
    assert registry.champion(settings.models_dir) == second["model_version"]
    rollback = warehouse("models", "promote", first)
    assert rollback.returncode == 0 and f"was {second['model_version']}" in rollback.stdout
    assert registry.champion(settings.models_dir) == first

    # a tampered model is refused with exit 78, and cannot be promoted
    onnx_path = registry.find_model(settings.models_dir, second["model_version"]) / "model.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes() + b"\0")
    for args in (("models", "show", second["model_version"]), ("models", "promote", second["model_version"])):
        out = warehouse(*args)
        assert out.returncode == 78 and "sha256" in out.stderr, args
    assert warehouse("models", "show", "../../etc").returncode == 78
    assert warehouse("models", "show", "default-nope").returncode == 78


def test_train_without_data_exits_66(cli, settings):
    assert cli("features").returncode == 0  # an empty, built warehouse
    out = _train(cli)
    assert out.returncode == 66, out.stderr
    assert "no rows" in out.stderr


def test_train_without_warehouse_exits_66(cli):
    out = _train(cli)
    assert out.returncode == 66 and "does not exist" in out.stderr


def test_cron_job_entry_point_trains_through_the_cli_entry_point(warehouse, settings, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    REPO = Path(__file__).resolve().parents[2]
    fresh = tmp_path / "cron"  # folders the job creates on its way to the models dir
    env = {
        "MALLSCORE_WAREHOUSE": str(settings.warehouse),
        "MALLSCORE_MODELS_DIR": str(fresh / "models"),
        "PYTHONPATH": str(REPO),
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "train.py"), "--budget", "quick", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.umask(0o022),  # a permissive cron: the job must set the CLI's umask itself
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["promoted"] is True
    modes = {str(p.relative_to(tmp_path)): p.stat().st_mode & 0o777 for p in [fresh, *fresh.rglob("*")]}
    assert modes["cron"] == 0o700  # created by mkdir(parents=True): only the umask makes it private
    assert {p: m for p, m in modes.items() if m not in (0o600, 0o700)} == {}
    bad = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "train.py"), "--spec", "seed", "--budget", "quick"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 65


def test_demo_trains_and_promotes(settings):
    from mallscore.demo import run_demo

    lines = list(run_demo(settings, rows=300, new_rows=20, seed=3, budget="quick"))
    trained = next(line for line in lines if line.startswith("[3/5] trained default-"))
    assert "promoted to champion" in trained
    assert registry.champion(settings.models_dir) is not None
    assert any(line.startswith("[4/5] behaviour groups groups-") for line in lines)
    assert registry.champion(settings.models_dir, "groups") is not None
    assert any("(scoring_drift): age " in line for line in lines)
    assert any("top_reason=age: " in line or "top_reason=annual_income: " in line for line in lines)
    scored = next(line for line in lines if line.startswith("[5/5] scored"))
    assert "320 read, 320 scored, 0 rejected" in scored
    # the summary printed from the snapshot covers every scored customer
    summary = [
        line.split()
        for line in lines
        if line.strip().split(" ")[0] in ("premium", "loyalty", "nurture", "low_priority")
    ]
    assert sum(int(parts[1].replace(",", "")) for parts in summary) == 320
