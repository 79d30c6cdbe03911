"""Training compares a challenger with the champion before promoting it, and MALLSCORE_MAX_SEGMENT_CHANGE can stop it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from mallscore import registry
from mallscore.cli.train import _card_lines
from mallscore.errors import UsageError
from mallscore.settings import load_settings
from mallscore.specs import get_spec
from mallscore.training import read_training_set, train_frame
from mallscore.training.budget import QUICK
from mallscore.warehouse import connect
from tests.scoring_support import run_cli, seed_customers


def _frame(settings):
    con = connect(settings.warehouse, read_only=True)
    try:
        return read_training_set(con, get_spec("default"))
    finally:
        con.close()


def test_segment_change_limit_keeps_the_champion_and_says_how_to_promote_by_hand(score_settings):
    seed_customers(score_settings, known=200, new=150)
    frame = _frame(score_settings)
    first = train_frame(frame, score_settings, budget=QUICK)
    assert first["promoted"] and first["comparison"] is None  # nothing to compare with

    inverted = frame.copy()
    inverted["high_spender"] = 1 - inverted["high_spender"]  # a challenger that re-ranks the new customers
    lines: list[str] = []
    limited = replace(score_settings, max_segment_change=0.05)
    second = train_frame(inverted, limited, budget=QUICK, announce=lines.append)

    assert not second["promoted"]
    assert registry.champion(score_settings.models_dir, "default") == first["model_version"]
    assert f"mallscore models promote {second['model_version']}" in second["promotion_reason"]
    assert "MALLSCORE_MAX_SEGMENT_CHANGE=0.05" in second["promotion_reason"]
    comparison = second["comparison"]
    assert comparison["against"] == first["model_version"] and comparison["changed_share"] > 0.05
    assert len(lines) == 1 and "would change segment" in lines[0]
    card = registry.load_card(score_settings.models_dir, second["model_version"])
    assert card["comparison"] == comparison  # recorded in the sealed card
    assert any(line.startswith("comparison") and "would change segment" in line for line in _card_lines(card, False))

    # the rule alone (no veto) promotes it and logs the headline from its card
    assert registry.auto_promote(score_settings.models_dir, card)[0]
    log = score_settings.models_dir / "default" / registry.PROMOTIONS_LOG
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["version"] == second["model_version"] and last["comparison"] == comparison

    out = run_cli(score_settings, "models", "promote", first["model_version"])  # by hand (here a rollback)
    assert out.returncode == 0, out.stderr
    assert f"compared with champion {second['model_version']}" in out.stdout and "would change segment" in out.stdout
    assert registry.champion(score_settings.models_dir, "default") == first["model_version"]
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["version"] == first["model_version"]
    assert last["comparison"]["against"] == second["model_version"]
    assert last["comparison"]["changed"] == comparison["changed"]  # the same two models, the other way round


@pytest.mark.parametrize("raw", ["1.5", "-0.1", "nan", "lots"])
def test_bad_segment_change_limit_is_a_usage_error(raw):
    with pytest.raises(UsageError, match="MALLSCORE_MAX_SEGMENT_CHANGE"):
        load_settings({"MALLSCORE_MAX_SEGMENT_CHANGE": raw})
    assert load_settings({}).max_segment_change is None
    assert load_settings({"MALLSCORE_MAX_SEGMENT_CHANGE": "0.1"}).max_segment_change == 0.1
