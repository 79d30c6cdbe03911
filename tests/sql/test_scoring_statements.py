"""sql/scoring/: every statement that writes a run's tables is a file there, and every file is used."""

from __future__ import annotations

import re
from pathlib import Path

import mallscore
from mallscore.warehouse import SQL_DIR

PACKAGE = Path(mallscore.__file__).parent
STATE_TABLES = ("scoring_runs", "segments", "segment_archive", "rejected_rows")
WRITE = re.compile(r"\b(insert\s+into|update|delete\s+from)\s+(" + "|".join(STATE_TABLES) + r")\b", re.I)


def _python_sources() -> dict[str, str]:
    return {str(p.relative_to(PACKAGE)): p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py")}


def test_no_scoring_module_writes_a_run_table_with_inline_sql() -> None:
    sources = {name: text for name, text in _python_sources().items() if name.startswith("scoring/")}
    assert len(sources) >= 5
    offenders = {name: WRITE.findall(text) for name, text in sources.items() if WRITE.search(text)}
    assert offenders == {}


def test_every_scoring_statement_is_lower_case_commented_and_used() -> None:
    code = "\n".join(_python_sources().values())
    for path in sorted((SQL_DIR / "scoring").glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        assert text.startswith("-- "), f"{path.name}: say what the statement is for in a first-line comment"
        body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
        assert body == body.lower(), f"{path.name}: lower-case SQL"
        assert "{" not in body and "%s" not in body, f"{path.name}: named parameters only ($name)"
        assert f'"{path.stem}"' in code or f"scoring/{path.stem}" in code or '"candidates_' in code, path.name


def test_every_write_of_a_run_table_in_sql_scoring_binds_its_values() -> None:
    for path in sorted((SQL_DIR / "scoring").glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        if WRITE.search(text):
            literals = re.findall(r"'[^']*'", "\n".join(x for x in text.splitlines() if not x.startswith("--")))
            allowed = {
                "'new'",
                "'changed'",
                "'removed'",
                "'observed'",
                "'predicted'",
                "'running'",
                "'succeeded'",
                "'abandoned'",
                "'the process ended before the run finished (killed?); nothing it wrote was kept'",
            }
            assert set(literals) <= allowed, f"{path.name}: values must be bound parameters, not {literals}"
