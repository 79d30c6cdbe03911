"""`models compare`: two real models on a real warehouse, checked against what the scoring job really does."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from mallscore import registry
from mallscore.compare import compare, load_pair
from mallscore.scoring import score_customers
from tests.scoring_support import REPO, query, run_cli, write_model


def _segments(settings) -> dict[int, tuple[str, bool]]:
    rows = query(settings, "select customer_id, segment, predicted_high_spender from segments")
    return {c: (s, bool(p)) for c, s, p in rows}


def test_compare_matrix_is_what_two_scoring_runs_would_write(scored_setup):
    settings = scored_setup
    write_model(settings.models_dir, "v2", champion=False, flip=True)  # labels inverted: p2 = 1 - p1
    result = compare(settings, *load_pair(settings, "v2"))  # default: against the champion v1

    score_customers(settings, "all", publish=False)  # the real job, v1: SQL segment rule
    before = _segments(settings)
    registry.promote(settings.models_dir, "v2")
    score_customers(settings, "all", publish=False)
    after = _segments(settings)

    expected: dict[str, dict[str, int]] = {a: dict.fromkeys(result["matrix"], 0) for a in result["matrix"]}
    for customer, (segment, _) in before.items():
        expected[segment][after[customer][0]] += 1
    assert result["matrix"] == expected
    assert result["customers"] == 500 and result["scored"] + result["rejected"] == 500
    changed = sum(before[c][0] != after[c][0] for c in before)
    assert result["changed"] == changed and result["changed_share"] == changed / 500
    assert result["label_flips"] == sum(before[c][1] != after[c][1] for c in before)
    # by construction: known customers keep their observed tier, new ones swap ends, every label flips
    assert 100 <= changed <= 200 and result["label_flips"] == 500
    assert result["matrix"]["top"]["low"] > 0 and result["matrix"]["low"]["top"] > 0
    # lift on labelled customers: the inverted model's top tier is worse than the base rate, v1's better
    assert result["labelled"] == 300
    assert result["tiers"]["champion"][0]["lift"] > 1 > result["tiers"]["challenger"][0]["lift"]
    top = result["tiers"]["champion"][0]
    assert top["rate_ci_low"] <= top["observed_rate"] <= top["rate_ci_high"]
    assert sum(t["n"] for t in result["tiers"]["challenger"]) == 300


def test_compare_cli_json_and_never_imports_scikit_learn(scored_setup):
    settings = scored_setup
    write_model(settings.models_dir, "v2", champion=False, flip=True)
    code = textwrap.dedent(
        """
        import sys
        from mallscore.cli.app import main
        sys.argv = ["mallscore", "models", "compare", "v2", "--json"]
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, exc.code
        heavy = sorted(m for m in ("sklearn", "skl2onnx", "pandas", "matplotlib") if m in sys.modules)
        print("HEAVY", heavy, file=sys.stderr)
        """
    )
    from tests.scoring_support import cli_env

    out = subprocess.run(
        [sys.executable, "-c", code], env=cli_env(settings), capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stderr
    data = json.loads(out.stdout)
    assert {"customers", "changed", "changed_share", "label_flips", "matrix", "tiers"} <= set(data)
    assert data["champion"] == "v1" and data["challenger"] == "v2"


def test_compare_refuses_models_with_different_features(scored_setup):
    settings = scored_setup
    write_model(settings.models_dir, "other", champion=False, ranges={"age": (18.0, 60.0)})
    out = run_cli(settings, "models", "compare", "other")
    assert out.returncode == 2, out.stderr
    assert "different features" in out.stderr and "Traceback" not in out.stderr
