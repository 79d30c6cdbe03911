from pathlib import Path

import pytest

from mallscore.errors import UsageError
from mallscore.settings import Settings, load_settings


def test_defaults_then_env_then_flags():
    assert load_settings({}) == Settings()
    env = {"MALLSCORE_WAREHOUSE": "/a/w.duckdb", "MALLSCORE_MODELS_DIR": "/a/m", "MALLSCORE_LOCK_TIMEOUT": "5"}
    from_env = load_settings(env)
    assert (from_env.warehouse, from_env.models_dir, from_env.lock_timeout) == (Path("/a/w.duckdb"), Path("/a/m"), 5.0)
    flagged = load_settings(env, warehouse=Path("/b/w.duckdb"), lock_timeout=1.0)
    assert (
        flagged.warehouse == Path("/b/w.duckdb") and flagged.models_dir == Path("/a/m") and flagged.lock_timeout == 1.0
    )


def test_bad_lock_timeout_is_a_usage_error():
    with pytest.raises(UsageError, match="MALLSCORE_LOCK_TIMEOUT"):
        load_settings({"MALLSCORE_LOCK_TIMEOUT": "soon"})


def test_snapshot_sits_beside_the_warehouse():
    assert Settings(warehouse=Path("/x/wh.duckdb")).snapshot == Path("/x/wh_analyst.duckdb")


def test_importing_the_package_does_no_work(tmp_path):
    import subprocess
    import sys

    code = "import mallscore, mallscore.settings, mallscore.cli, sys; print(sorted(m for m in ('sklearn','skl2onnx','matplotlib') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == []  # no warehouse or models folder created on import


def test_the_jobs_duckdb_memory_limit_comes_from_the_environment() -> None:
    from mallscore.settings import DEFAULT_MEMORY_LIMIT

    assert load_settings({}).memory_limit == DEFAULT_MEMORY_LIMIT
    assert load_settings({"MALLSCORE_MEMORY_LIMIT": "2GB"}).memory_limit == "2GB"
    assert load_settings({"MALLSCORE_MEMORY_LIMIT": "default"}).memory_limit == "default"
    with pytest.raises(UsageError, match="MALLSCORE_MEMORY_LIMIT"):
        load_settings({"MALLSCORE_MEMORY_LIMIT": "64MB'; attach 'x"})


def test_the_memory_limit_reaches_the_jobs_connection(tmp_path) -> None:
    from mallscore.scoring import open_job_connection

    settings = load_settings({"MALLSCORE_MEMORY_LIMIT": "100MB"}, warehouse=tmp_path / "w.duckdb")
    con = open_job_connection(settings)
    try:
        limit = con.execute("select current_setting('memory_limit')").fetchall()[0][0]
    finally:
        con.close()
    assert limit.replace(" ", "").upper() in ("95.3MIB", "100.0MB", "100MB")


def test_every_mallscore_variable_is_read_by_settings_and_nowhere_else() -> None:
    import re

    import mallscore
    from mallscore.settings import ENVIRONMENT

    env = {
        "MALLSCORE_PUBLISH_URL": " postgresql://u@h/db ",
        "MALLSCORE_PUBLISH_TABLE": "campaign.segments",
        "MALLSCORE_SOURCE_URL": "sqlite:///src.db",
        "MALLSCORE_DEBUG": "1",
    }
    loaded = load_settings(env)
    assert (loaded.publish_url, loaded.publish_table, loaded.source_url, loaded.debug) == (
        "postgresql://u@h/db",
        "campaign.segments",
        "sqlite:///src.db",
        True,
    )
    assert load_settings({"MALLSCORE_DEBUG": "0"}).debug is False
    assert load_settings({}).publish_table == "mallscore_segments"
    package = Path(mallscore.__file__).parent
    readers = re.compile(r"(environ|getenv)\b")
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "settings.py" and readers.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], f"environment read outside Settings: {offenders}"
    readme = (package.parent / "README.md").read_text(encoding="utf-8")
    assert [name for name in ENVIRONMENT if name not in readme] == []


def test_the_analyst_snapshot_path_and_group_come_from_the_environment() -> None:
    assert load_settings({}).analyst_group is None
    settings = load_settings(
        {"MALLSCORE_ANALYST_PATH": "/srv/share/mall.duckdb", "MALLSCORE_ANALYST_GROUP": " analysts "}
    )
    assert settings.snapshot == Path("/srv/share/mall.duckdb") and settings.analyst_group == "analysts"
    # unset or blank: the snapshot stays beside the warehouse
    blank = load_settings({"MALLSCORE_ANALYST_PATH": " ", "MALLSCORE_WAREHOUSE": "/x/wh.duckdb"})
    assert blank.snapshot == Path("/x/wh_analyst.duckdb")
