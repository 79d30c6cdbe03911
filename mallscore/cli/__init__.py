"""The ``mallscore`` command line: a thin layer over the library.

Each area registers its commands on the shared ``app`` from its own module;
importing this package wires them all up.
"""

from mallscore.cli import data as _data  # noqa: F401  (ingest, synth, features, status, demo)
from mallscore.cli import groups as _groups  # noqa: F401  (groups train)
from mallscore.cli import monitor as _monitor  # noqa: F401  (drift)
from mallscore.cli import ops as _ops  # noqa: F401  (backup, restore)
from mallscore.cli import publish as _publish  # noqa: F401  (publish, export-sql)
from mallscore.cli import read as _read  # noqa: F401  (segments, changes, rejected)
from mallscore.cli import score as _score  # noqa: F401  (score, rescore, runs)
from mallscore.cli import train as _train  # noqa: F401  (train, models list|show|promote)
from mallscore.cli.app import app, main

__all__ = ["app", "main"]
