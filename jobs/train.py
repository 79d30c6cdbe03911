"""Cron entry point: train the default spec from the configured warehouse, promote it if not worse.

Usage: python jobs/train.py [--spec NAME] [--no-promote] [--json]
Same settings (MALLSCORE_WAREHOUSE, MALLSCORE_MODELS_DIR) and exit codes as `mallscore train`:
0 ok, 65 leakage or untrainable data, 66 no training data, 75 warehouse locked, 78 parity gate failed.
"""

import sys

from mallscore.cli import app

if __name__ == "__main__":
    app(args=["train", *sys.argv[1:]], prog_name="jobs/train.py")
