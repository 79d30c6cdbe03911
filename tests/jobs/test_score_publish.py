"""The nightly job's publish step (MALLSCORE_PUBLISH_URL) against a real PostgreSQL server."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

from mallscore.settings import Settings
from tests.pg_server import APP_PASSWORD
from tests.scoring_support import (
    REPO,
    cli_env,
    query,
    run_cli,
)


def _pg_count(server, sql: str, params: list | None = None):
    with psycopg.connect(server.url(), autocommit=True) as c:
        return c.execute(sql, params).fetchall()


@pytest.mark.postgres
def test_score_publishes_after_the_run_when_the_url_is_set(scored_setup: Settings, pg_server) -> None:
    done = run_cli(
        scored_setup,
        "score",
        "--json",
        MALLSCORE_PUBLISH_URL=pg_server.url(),
        MALLSCORE_PUBLISH_TABLE="nightly_segments",
    )
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    remote = run["remote_publish"]
    assert (remote["status"], remote["table"], remote["rows"], remote["method"]) == (
        "published",
        "nightly_segments",
        500,
        "copy",
    )
    assert remote["run_ids"] == [run["run_id"]] and APP_PASSWORD not in done.stdout
    assert _pg_count(pg_server, "select count(*), count(distinct run_id) from nightly_segments") == [(500, 1)]
    assert _pg_count(
        pg_server, "select status, rows_scored from nightly_segments_runs where run_id = %s", [run["run_id"]]
    ) == [("succeeded", 500)]

    # the cron entry point does the same; the summary line says so; the default table name is used
    job = subprocess.run(
        [sys.executable, "jobs/nightly_score.py", "--all"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(scored_setup, MALLSCORE_PUBLISH_URL=pg_server.url()),
    )
    assert job.returncode == 0, job.stderr
    assert job.stderr == "" and len(job.stdout.strip().splitlines()) == 1
    assert "published 500 segments to mallscore_segments" in job.stdout and APP_PASSWORD not in job.stdout
    latest = query(scored_setup, "select run_id from scoring_runs order by started_at desc limit 1")[0][0]
    assert _pg_count(pg_server, "select distinct run_id from mallscore_segments") == [(latest,)]


@pytest.mark.postgres
def test_without_the_url_nothing_is_published(scored_setup: Settings) -> None:
    done = run_cli(scored_setup, "score", "--json", MALLSCORE_PUBLISH_URL="")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["remote_publish"] is None


@pytest.mark.postgres
@pytest.mark.parametrize("failure, code", [("bad password", 78), ("unreachable", 75)])
def test_a_failed_publish_keeps_the_committed_run_and_exits_with_its_code(
    scored_setup: Settings, pg_server, failure: str, code: int
) -> None:
    if failure == "bad password":
        url = pg_server.url(password="Wr0ng-" + APP_PASSWORD)
    else:
        url = pg_server.url().replace(f":{pg_server.port}/", ":1/")  # nothing listens on port 1
    done = run_cli(scored_setup, "score", "--json", MALLSCORE_PUBLISH_URL=url)
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "succeeded and is committed" in lines[0] and "retry with `mallscore publish`" in lines[0]
    assert APP_PASSWORD not in done.stderr + done.stdout and "Wr0ng" not in done.stderr + done.stdout
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded" and run["remote_publish"]["status"] == "failed"
    assert run["remote_publish"]["exit_code"] == code
    # the run stands: committed, logged, snapshot published; the next run has nothing to do
    assert query(scored_setup, "select status, rows_scored from scoring_runs where run_id = ?", [run["run_id"]]) == [
        ("succeeded", 500)
    ]
    assert query(scored_setup, "select count(*) from segments")[0][0] == 500 and scored_setup.snapshot.exists()
    assert "error" not in query(scored_setup, "select coalesce(error, '') from scoring_runs")[0][0]
    # publishing can be retried by hand once the target is right
    retry = run_cli(scored_setup, "publish", "--to", pg_server.url(), "--table", f"retried_{code}")
    assert retry.returncode == 0, retry.stderr
    assert _pg_count(pg_server, f"select count(*) from retried_{code}") == [(500,)]
