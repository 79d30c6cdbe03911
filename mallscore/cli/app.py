"""The typer application, its global options, and the process entry point."""

from __future__ import annotations

from pathlib import Path

import typer

from mallscore import __version__

app = typer.Typer(
    name="mallscore",
    help=(
        "Nightly high-spender segments for a shopping mall.\n\n"
        "Loads customers into a DuckDB warehouse, trains an honest model, scores "
        "customers with ONNX and writes segment tables analysts can query.\n\n"
        "Exit codes: 0 ok, 1 unexpected, 2 usage, 3 drift alert (score --fail-on-drift), 65 bad input data, 66 input missing, "
        "75 retry later (locked/unreachable), 78 configuration or model error."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mallscore {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    warehouse: Path | None = typer.Option(
        None,
        "--warehouse",
        metavar="PATH",
        help="DuckDB warehouse file [env MALLSCORE_WAREHOUSE; default warehouse/mallscore.duckdb].",
    ),
    models_dir: Path | None = typer.Option(
        None,
        "--models-dir",
        metavar="PATH",
        help="Folder of versioned models [env MALLSCORE_MODELS_DIR; default models/].",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Global options apply to every command."""
    ctx.obj = {"warehouse": warehouse, "models_dir": models_dir}


def main() -> None:
    """Console-script entry point: files the CLI creates are readable by their owner only."""
    import os

    import mallscore.cli  # noqa: F401  (registers every command module)

    os.umask(0o077)
    app()
