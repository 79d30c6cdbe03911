"""Shared fixtures: a fresh warehouse in a temp dir and a way to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mallscore.settings import Settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings pointing at a warehouse and a models folder inside tmp_path."""
    return Settings(warehouse=tmp_path / "wh" / "mallscore.duckdb", models_dir=tmp_path / "models", lock_timeout=0.5)


@pytest.fixture
def con(settings: Settings):
    """A built warehouse connection on a real DuckDB file."""
    from mallscore.warehouse import build, connect

    connection = connect(settings.warehouse)
    build(connection)
    yield connection
    connection.close()


def run_cli(
    args: list[str], settings: Settings, *, env: dict | None = None, timeout: float = 300, **kw
) -> subprocess.CompletedProcess:
    """Run ``python -m mallscore`` in a real subprocess against ``settings``."""
    full_env = {
        **os.environ,
        "MALLSCORE_WAREHOUSE": str(settings.warehouse),
        "MALLSCORE_MODELS_DIR": str(settings.models_dir),
        "MALLSCORE_LOCK_TIMEOUT": str(settings.lock_timeout),
        "PYTHONPATH": str(REPO),
    }
    full_env.pop("MALLSCORE_DEBUG", None)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "mallscore", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=kw.pop("cwd", REPO),
        **kw,
    )


@pytest.fixture
def cli(settings: Settings):
    """Call the real CLI in a subprocess: cli("ingest", path, "--json")."""

    def call(*args: object, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
        return run_cli([str(a) for a in args], settings, env=env, **kw)

    return call


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server started once per test session (per xdist worker), stopped at the end.

    Skips with what to install when the server binaries are missing; under CI
    (MALLSCORE_REQUIRE_POSTGRES=1) a missing server fails instead.
    """
    from tests.pg_server import start_server

    try:
        server = start_server()
    except LookupError as exc:
        if os.environ.get("MALLSCORE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"MALLSCORE_REQUIRE_POSTGRES=1 but {exc}")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def spark():
    """One real local Spark session (2 cores, 2 shuffle partitions, no UI) shared by the Spark tests.

    Skips naming what is missing (pyspark, or Java) outside CI; under CI
    (MALLSCORE_REQUIRE_SPARK=1) a missing part fails instead.
    """
    import shutil

    missing = None
    try:
        import pyspark  # noqa: F401
    except ImportError:
        missing = "pyspark is not installed (pip install -e '.[spark]')"
    if missing is None and shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        missing = "no Java runtime (java on PATH or JAVA_HOME) for Spark"
    if missing:
        if os.environ.get("MALLSCORE_REQUIRE_SPARK") == "1":
            pytest.fail(f"MALLSCORE_REQUIRE_SPARK=1 but {missing}")
        pytest.skip(missing)
    from mallscore.spark_job import spark_session

    session = spark_session(
        "local[2]",
        "mallscore-tests",
        **{
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.driver.memory": "1g",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
        },
    )
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture
def score_settings(tmp_path: Path) -> Settings:
    """Settings for a warehouse and a models folder inside tmp_path (short lock timeout)."""
    return Settings(warehouse=tmp_path / "wh" / "mallscore.duckdb", models_dir=tmp_path / "models", lock_timeout=0.5)


@pytest.fixture
def scored_setup(score_settings: Settings) -> Settings:
    """A warehouse with 300 known + 200 new customers and a champion model v1."""
    from tests.scoring_support import seed_customers, write_model

    seed_customers(score_settings)
    write_model(score_settings.models_dir, "v1")
    return score_settings
