"""Operations commands: backup and restore of the warehouse."""

from __future__ import annotations

from pathlib import Path

import typer

from mallscore.cli._common import cli_errors, emit_json, settings_from
from mallscore.cli.app import app


@app.command()
@cli_errors
def backup(
    ctx: typer.Context,
    dest: str = typer.Argument(..., help="Backup file (or folder: an existing one, or a path ending in /) to write."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Write a consistent copy of the warehouse (waits for any run holding it; exit 75 after --lock-timeout)."""
    from mallscore.backup import backup_warehouse

    result = backup_warehouse(settings_from(ctx), dest)
    if json_out:
        emit_json(result.as_dict())
    else:
        typer.echo(
            f"backed up {result.source} to {result.destination} ({result.bytes:,} bytes, sha256 {result.sha256[:12]})"
        )


@app.command()
@cli_errors
def restore(
    ctx: typer.Context,
    src: Path = typer.Argument(..., help="A file written by `mallscore backup`."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Replace the warehouse by a backup; the current one is kept as <warehouse>.before-restore."""
    from mallscore.backup import restore_warehouse

    result = restore_warehouse(settings_from(ctx), src)
    if json_out:
        emit_json(result.as_dict())
    else:
        typer.echo(f"restored {result.destination} from {result.source} ({result.bytes:,} bytes)")
