"""Shared fixtures: a real PostgreSQL server for the whole session (tests marked ``postgres``)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server started once per test session (per xdist worker), stopped at the end.

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
