"""Nightly scoring for cron: ``mallscore score --quiet`` with any extra flags passed through.

Settings come from the environment (MALLSCORE_WAREHOUSE, MALLSCORE_MODELS_DIR,
MALLSCORE_LOCK_TIMEOUT); with MALLSCORE_PUBLISH_URL set (and optionally
MALLSCORE_PUBLISH_TABLE) the segments are published there after the run. The
exit code is the CLI's (0 ok, 65, 75, 78, 143...; 75/78 with the run committed
when only the publish failed: retry with `mallscore publish`).
See jobs/crontab.example.
"""

import sys

from mallscore.cli import main

if __name__ == "__main__":
    sys.argv = ["mallscore", "score", "--quiet", *sys.argv[1:]]
    main()
