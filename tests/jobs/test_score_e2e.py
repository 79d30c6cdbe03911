"""The real pipeline through the CLI: synthesise, train (quick budget), score, rescore, read the snapshot."""

from __future__ import annotations

import json

import duckdb
import pytest

from mallscore.settings import Settings
from tests.scoring_support import query, run_cli


@pytest.mark.slow
def test_a_really_trained_champion_scores_new_and_known_customers(score_settings: Settings) -> None:
    assert run_cli(score_settings, "synth", "--rows", "600", "--seed", "5").returncode == 0
    assert run_cli(score_settings, "synth", "--rows", "150", "--seed", "6", "--new").returncode == 0
    trained = run_cli(score_settings, "train", "--budget", "quick", "--json", timeout=600)
    assert trained.returncode == 0, trained.stderr
    version = json.loads(trained.stdout)["model_version"]

    done = run_cli(score_settings, "score", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert (run["model_version"], run["rows_read"]) == (version, 750)
    assert run["rows_scored"] + run["rows_rejected"] == 750
    card = json.loads((score_settings.models_dir / "default" / version / "card.json").read_text())
    tiers = [t["name"] for t in card["tiers"]]
    rows = query(
        score_settings,
        """
        select s.segment, s.basis, s.p_high_spender, s.predicted_high_spender, f.spending_score
        from segments s join features_customer f using (customer_id)""",
    )
    assert {r[1] for r in rows} == {"observed", "predicted"}
    for segment, basis, p, predicted, score in rows:
        assert segment in tiers
        assert predicted == (p >= card["threshold"])
        expected = (
            next(t["name"] for t in card["tiers"] if t["min_score"] <= score)
            if basis == "observed"
            else next(t["name"] for t in card["tiers"] if t["min_p"] <= p)
        )
        assert segment == expected

    rescored = json.loads(run_cli(score_settings, "rescore", "700", "--json").stdout)
    stored = query(score_settings, "select p_high_spender, segment from segments where customer_id = 700")[0]
    assert (rescored["customers"][0]["p_high_spender"], rescored["customers"][0]["segment"]) == stored

    snap = duckdb.connect(str(score_settings.snapshot), read_only=True)
    try:
        assert snap.execute("select sum(customers) from segment_summary").fetchall()[0][0] == run["rows_scored"]
    finally:
        snap.close()
