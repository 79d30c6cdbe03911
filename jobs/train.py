"""Cron entry point: train the default spec from the configured warehouse, promote it if not worse.

Usage: python jobs/train.py [--spec NAME] [--no-promote] [--budget NAME] [--json]
It is `mallscore train` through the CLI's own entry point (so the same owner-only umask),
with the same settings (MALLSCORE_WAREHOUSE, MALLSCORE_MODELS_DIR) and exit codes:
0 ok, 65 leakage or untrainable data, 66 no training data, 75 warehouse locked, 78 parity gate failed.
"""

import sys

from mallscore.cli import main

if __name__ == "__main__":
    sys.argv = ["mallscore", "train", *sys.argv[1:]]
    main()
