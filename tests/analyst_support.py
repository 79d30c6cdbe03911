"""Real older DuckDB clients and real unix accounts for the analyst snapshot tests.

The older clients live in a virtual environment made once per machine and kept
under ``~/.cache/mallscore-test/duckdb-<version>`` (``$XDG_CACHE_HOME`` moves
it): ``duckdb`` 1.1.3 for Python (the oldest client the README promises) and
the ``duckdb-cli`` package's DuckDB CLI 1.5.6. A fresh machine builds it with
pip from the package registry (about 15 s); later runs reuse it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

OLD_DUCKDB = "1.1.3"
OLD_CLI = "1.5.6"
README = Path(__file__).resolve().parent.parent / "README.md"


@dataclass(frozen=True)
class OldClients:
    """The cached environment: its Python (duckdb 1.1.3) and the DuckDB CLI binary (1.5.6)."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def cli(self) -> Path:
        found = sorted(self.root.glob("lib/python*/site-packages/duckdb_cli/duckdb"))
        assert found, f"no DuckDB CLI binary in {self.root}"
        return found[0]


def _cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mallscore-test" / f"duckdb-{OLD_DUCKDB}"


def old_clients() -> OldClients:
    """The cached older clients, built on first use (a file lock keeps parallel workers from racing)."""
    root = _cache_root()
    ready = root / f".ready-duckdb-{OLD_DUCKDB}-cli-{OLD_CLI}"
    if ready.exists():
        return OldClients(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            _build(root)
            ready.touch()
    return OldClients(root)


def _build(root: Path) -> None:
    """A fresh virtual environment at ``root`` with the older clients from the package registry."""
    made = None
    for base in ("/usr/bin/python3", sys.executable):  # the system Python first; Debian may lack its venv module
        shutil.rmtree(root, ignore_errors=True)
        if Path(base).exists():
            made = subprocess.run([base, "-m", "venv", str(root)], capture_output=True, text=True)
            if made.returncode == 0:
                break
    assert made is not None and made.returncode == 0, f"cannot make a virtual environment: {made and made.stderr}"
    pip = subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        + [f"duckdb=={OLD_DUCKDB}", f"duckdb-cli=={OLD_CLI}"],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, f"pip could not install the older DuckDB clients: {pip.stderr[-2000:]}"


def readme_analyst_queries() -> list[str]:
    """Every statement of the README's "Example queries" block (the analysts' queries)."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Example queries", 1)[1]
    block = re.search(r"```sql\n(.*?)```", section, re.S).group(1)
    code = "\n".join(line for line in block.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in code.split(";") if s.strip()]


_READER = """
import json, sys
import duckdb
path, queries = sys.argv[1], json.loads(sys.argv[2])
con = duckdb.connect(path, read_only=True)
out = {"version": duckdb.__version__, "rows": [len(con.execute(q).fetchall()) for q in queries],
       "segments": con.execute("select count(*) from segments").fetchall()[0][0]}
print(json.dumps(out))
"""


def read_with_old_python(clients: OldClients, path: Path, queries: list[str]) -> dict:
    """Open ``path`` read-only with duckdb 1.1.3 and run ``queries``: the row count of each, and of segments."""
    done = subprocess.run(
        [str(clients.python), "-c", _READER, str(path), json.dumps(queries)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def run_as(user: str, *args: object) -> subprocess.CompletedProcess:
    """Run a command as another unix account (tests run as root)."""
    return subprocess.run(
        ["runuser", "-u", user, "--", *map(str, args)], capture_output=True, text=True, errors="replace"
    )
