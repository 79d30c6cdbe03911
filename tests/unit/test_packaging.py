"""The SQL ships inside the package: every file of sql/ is a resource of mallscore.sql, in the checkout and the wheel.

Nothing is built here (the wheel itself is checked by .ci/check-wheel); these tests read the
resources through importlib and the packaging settings in pyproject.toml, so a lost mapping,
a glob that misses a subfolder or a package left out of the list fails `make test`.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mallscore.errors import ConfigError
from mallscore.warehouse import sql_files, sql_query, sql_root

REPO = Path(__file__).resolve().parents[2]
SQL = REPO / "sql"


def _repo_sql() -> list[str]:
    return sorted(p.relative_to(SQL).as_posix() for p in SQL.rglob("*.sql"))


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def _resource(relative: str):
    node = sql_root()
    for part in relative.split("/"):
        node = node.joinpath(part)
    return node


def test_every_sql_file_of_the_repo_is_a_package_resource():
    files = _repo_sql()
    assert "ingest/validate_customers.sql" in files and len(files) > 10
    for relative in files:
        resource = _resource(relative)
        assert resource.is_file(), f"{relative} is not a resource of mallscore.sql"
        assert resource.read_bytes() == (SQL / relative).read_bytes(), relative


def test_numbered_files_and_named_queries_are_read_through_the_package():
    assert [f.path.name for f in sql_files()] == sorted(p.name for p in SQL.glob("[0-9][0-9]_*.sql"))
    for relative in _repo_sql():
        if "/" in relative:  # ingest/..., scoring/...: read by name
            assert sql_query(relative.removesuffix(".sql")) == (SQL / relative).read_text(encoding="utf-8")


def test_the_wheel_mapping_covers_every_sql_file():
    config = _setuptools()
    assert config["package-dir"]["mallscore.sql"] == "sql"
    assert "mallscore.sql" in config["packages"]
    patterns = config["package-data"]["mallscore.sql"]
    shipped = {m for pattern in patterns for m in glob.glob(pattern, root_dir=SQL, recursive=True)}
    missing = [f for f in _repo_sql() if f not in shipped]
    assert missing == [], f"package-data of mallscore.sql does not ship {missing}"


def test_every_python_package_is_listed_for_the_wheel():
    on_disk = {
        p.parent.relative_to(REPO).as_posix().replace("/", ".") for p in (REPO / "mallscore").rglob("__init__.py")
    }
    listed = set(_setuptools()["packages"])
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"


def test_a_missing_query_is_a_config_error_and_names_cannot_escape(tmp_path):
    with pytest.raises(ConfigError, match=r"ingest/nope\.sql is missing"):
        sql_query("ingest/nope")
    with pytest.raises(ValueError):
        sql_query("../pyproject")
    with pytest.raises(ConfigError, match="no SQL files"):
        sql_files(tmp_path)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_the_card_commit_is_ours_in_a_checkout_and_none_inside_another_repository(tmp_path):
    from mallscore.training.job import git_commit

    assert git_commit() == _git(REPO, "rev-parse", "HEAD")
    # an installed copy inside someone else's repository (a venv in their project) must not claim their commit
    other = tmp_path / "project"
    site = other / ".venv" / "site-packages"
    shutil.copytree(REPO / "mallscore", site / "mallscore", ignore=shutil.ignore_patterns("__pycache__"))
    _git(tmp_path, "init", "-q", str(other))
    _git(other, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "theirs")
    out = subprocess.run(
        [sys.executable, "-c", "import mallscore.training.job as j; print(j.__file__, j.git_commit())"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(site / "mallscore" / "training" / "job.py"), "None"]
