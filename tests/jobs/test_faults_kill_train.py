"""A training killed while it registers its model: the registry stays consistent and the next run cleans up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from mallscore import registry
from tests.conftest import REPO
from tests.scoring_support import write_model

KILL_WHILE_REGISTERING = """
import os, signal, sys
from mallscore import atomic
from mallscore.cli import main

original = atomic.write_new

def then_die(*args, **kwargs):  # the first file of the new version is on disk, the folder not renamed yet
    original(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

atomic.write_new = then_die
sys.argv = ["mallscore", "train", "--budget", "quick"]
main()
"""


def test_a_training_killed_while_registering_leaves_a_consistent_registry(cli, settings) -> None:
    assert cli("synth", "--rows", "300", "--seed", "4").returncode == 0
    write_model(settings.models_dir, "v1")  # the champion a killed training must not disturb
    env = {
        **os.environ,
        "MALLSCORE_WAREHOUSE": str(settings.warehouse),
        "MALLSCORE_MODELS_DIR": str(settings.models_dir),
        "PYTHONPATH": str(REPO),
    }
    killed = subprocess.run([sys.executable, "-c", KILL_WHILE_REGISTERING], env=env, cwd=REPO, timeout=600)
    assert killed.returncode == -signal.SIGKILL
    spec_dir = settings.models_dir / "default"
    leftovers = [p.name for p in spec_dir.iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1  # the half-written version folder, never renamed into place
    assert registry.champion(settings.models_dir) == "v1"
    registry.load_card(settings.models_dir, "v1")  # the champion still verifies
    assert [r["version"] for r in registry.list_models(settings.models_dir)] == ["v1"]  # no half model listed
    logged = [json.loads(line)["version"] for line in (spec_dir / "promotions.log").read_text().splitlines()]
    assert logged[-1] == "v1"
    write_model(settings.models_dir, "v2", seed=5, champion=False)  # the next registration cleans up
    assert not [p.name for p in spec_dir.iterdir() if p.name.startswith(".tmp-")]
