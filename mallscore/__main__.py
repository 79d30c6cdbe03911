"""``python -m mallscore`` runs the CLI."""

from mallscore.cli import main

main()
