"""SQL-looking names and values in every CLI entry point run nothing: checked names, bound values, quoted identifiers.

CSV cells, headers and file names are covered by test_injection_ingest.py. Here:
model versions, spec names, customer ids, ``publish --table`` and
``ingest --from ... --table/--query`` against a real PostgreSQL server, and
``--warehouse``/``--models-dir`` paths with odd characters. After each, the
warehouse still has its ``segments`` rows and no leak file exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import psycopg
import pytest

from mallscore.settings import Settings
from tests.fault_support import mode
from tests.scoring_support import REPO, run_cli, seed_customers, write_model


def payloads(leak: Path) -> list[str]:
    """The payloads every entry point gets: statement stacking, both quote kinds, a COPY to a file."""
    return [
        "x; DROP TABLE segments; --",
        "v1'; DROP TABLE segments; --",
        'v1"; DROP TABLE segments; --',
        f"COPY segments TO '{leak}'",
        f"x'); COPY segments TO '{leak}'; --",
    ]


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Settings:
    """A scored warehouse (500 segments), its snapshot, and champion v1."""
    root = tmp_path_factory.mktemp("inject")
    settings = Settings(warehouse=root / "wh" / "mallscore.duckdb", models_dir=root / "models", lock_timeout=0.5)
    seed_customers(settings)
    write_model(settings.models_dir, "v1")
    assert run_cli(settings, "score").returncode == 0
    return settings


def _segments(settings: Settings) -> int:
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return con.execute("select count(*) from segments").fetchall()[0][0]
    finally:
        con.close()


def _no_leak(*folders: Path) -> None:
    for folder in folders:
        assert not list(folder.rglob("leak.csv")), folder


def test_payloads_as_model_versions_spec_names_and_customer_ids_run_nothing(scored: Settings, tmp_path: Path) -> None:
    leak = tmp_path / "leak.csv"
    expected = {  # command -> exit code: names are checked against a pattern (78) or a fixed list (2)
        ("score", "--model"): 78,
        ("models", "show"): 78,
        ("models", "promote"): 78,
        ("export-sql", "--model"): 78,
        ("export-sql", "--spec"): 78,
        ("train", "--spec"): 2,
        ("rescore", "--write"): 2,
    }
    for payload in payloads(leak)[::2]:  # every name goes through one pattern check: three payload kinds suffice
        for command, code in expected.items():
            args = [*command[:1], payload, *command[1:]] if command[0] == "rescore" else [*command, payload]
            done = run_cli(scored, *args)
            assert done.returncode == code, (args, done.stderr)
            assert "Traceback" not in done.stderr and done.stdout == "", (args, done.stdout)
        listed = run_cli(scored, "models", "list", "--spec", payload, "--json")  # a filter compared as a string
        assert listed.returncode == 0 and listed.stdout.strip() == "[]"
    assert _segments(scored) == 500
    assert run_cli(scored, "models", "show", "v1", "--json").returncode == 0  # the registry is intact
    _no_leak(tmp_path, scored.warehouse.parent)
    assert not (REPO / "leak.csv").exists()


def _pg_tables(server) -> set[str]:
    with psycopg.connect(server.url(), autocommit=True) as c:
        return {
            r[0]
            for r in c.execute("select relname from pg_class where relnamespace = 'public'::regnamespace").fetchall()
        }


@pytest.mark.postgres
def test_publish_table_payloads_are_refused_and_a_keyword_name_is_quoted(
    scored: Settings, pg_server, tmp_path: Path
) -> None:
    leak = tmp_path / "leak.csv"
    env = {"MALLSCORE_PUBLISH_URL": pg_server.url()}
    before = _pg_tables(pg_server)
    for payload in payloads(leak) + ["segments; DROP TABLE mallscore_segments", "a.b.c", "public.x y"]:
        done = run_cli(scored, "publish", "--table", payload, **env)
        assert done.returncode == 2 and "is not allowed" in done.stderr, (payload, done.stderr)
        assert len(done.stderr.splitlines()) == 1
    assert _pg_tables(pg_server) == before  # nothing was created, dropped or renamed
    # a name that is valid but a reserved word is created verbatim, as a quoted identifier
    done = run_cli(scored, "publish", "--table", "select", **env)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(pg_server.url(), autocommit=True) as c:
        assert c.execute('select count(*) from public."select"').fetchall() == [(500,)]
        assert c.execute('select count(*) from public."select_runs"').fetchall() == [(1,)]
    assert _pg_tables(pg_server) - before == {
        "select",
        "select_runs",
        "select_pkey",
        "select_runs_pkey",
        "select_changes",
        "select_changes_run_id",
    }
    assert _segments(scored) == 500
    _no_leak(tmp_path, scored.warehouse.parent)


@pytest.fixture
def pg_source(pg_server):
    """A source table, a sequence, and a function that deletes: what a read-only transaction must stop."""
    with psycopg.connect(pg_server.url(), autocommit=True) as c:
        c.execute("drop table if exists inj_src cascade")
        c.execute("drop sequence if exists inj_seq")
        c.execute(
            "create table inj_src (customer_id bigint, gender text, age int, annual_income_thousands float8, "
            "spending_score int)"
        )
        c.execute("insert into inj_src values (1, 'Male', 30, 40, 60), (2, 'Female', 41, 70, null)")
        c.execute("create sequence inj_seq")
        c.execute("create or replace function inj_purge() returns int language sql as 'delete from inj_src; select 1'")
    return "inj_src"


def _pg_count(server, table: str) -> int:
    with psycopg.connect(server.url(), autocommit=True) as c:
        return c.execute(f"select count(*) from {table}").fetchall()[0][0]


@pytest.mark.postgres
def test_ingest_source_table_payloads_are_refused_and_a_query_runs_read_only(
    scored: Settings, pg_server, pg_source: str, tmp_path: Path
) -> None:
    leak = tmp_path / "leak.csv"
    env = {"MALLSCORE_SOURCE_URL": pg_server.url()}
    for payload in payloads(leak)[::2]:  # stacking, a double quote, a COPY after a closing quote
        done = run_cli(scored, "ingest", "--table", payload, **env)
        assert done.returncode == 2 and "is not allowed" in done.stderr, (payload, done.stderr)
    # --query is SQL run on the SOURCE with the user's own credentials, by design; it runs read-only
    columns = "customer_id, gender, age, annual_income_thousands, spending_score"
    queries = {
        f"select {columns} from inj_src; drop table inj_src; --": "multiple commands",  # one statement only
        f"select {columns}, inj_purge() from inj_src": "read-only transaction",  # side effects are refused
        f"select {columns}, nextval('inj_seq') from inj_src": "read-only transaction",
        f"copy inj_src to '{leak}'": "syntax error",
        f"with gone as (delete from inj_src returning *) select {columns} from gone": "WITH",
    }
    for query, words in queries.items():
        done = run_cli(scored, "ingest", "--query", query, **env)
        assert done.returncode == 78, (query, done.stderr)
        assert words in done.stderr and len(done.stderr.splitlines()) == 1, (query, done.stderr)
    assert _pg_count(pg_server, pg_source) == 2  # the source is unchanged
    with psycopg.connect(pg_server.url(), autocommit=True) as c:
        assert c.execute("select last_value, is_called from inj_seq").fetchall() == [(1, False)]
    ok = run_cli(scored, "ingest", "--query", f"select {columns} from inj_src", "--json", **env)
    assert ok.returncode == 0, ok.stderr
    assert _segments(scored) == 500
    _no_leak(tmp_path, scored.warehouse.parent)


ODD = 'it\'s "odd"; DROP TABLE segments; -- $(touch PWNED) `touch PWNED` ü'


def test_warehouse_and_models_paths_with_odd_characters_are_just_paths(tmp_path: Path) -> None:
    folder = tmp_path / ODD
    settings = Settings(warehouse=folder / f"{ODD}.duckdb", models_dir=folder / f"models {ODD}", lock_timeout=0.5)
    for args in (
        ["synth", "--rows", "50"],
        ["synth", "--rows", "20", "--new"],
        ["score"],
        ["rescore", "3"],
        ["status"],
        ["backup", str(folder / f"backup {ODD}.duckdb")],
        ["runs"],
    ):
        done = run_cli(settings, *args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr)
        if args[0] == "synth" and not settings.models_dir.exists():  # the CLI made the folder; now a model in it
            write_model(settings.models_dir, "v1")
    assert _segments(settings) == 70
    assert settings.snapshot.exists() and settings.snapshot.name == f"{ODD}_analyst.duckdb"
    assert (folder / f"backup {ODD}.duckdb").exists()
    assert mode(folder) == 0o700 and mode(settings.warehouse) == 0o600
    assert not list(tmp_path.rglob("PWNED")) and not (REPO / "PWNED").exists()


def test_warehouse_connections_run_with_external_access_disabled(scored: Settings, tmp_path: Path) -> None:
    from mallscore.scoring import open_job_connection
    from mallscore.warehouse import connect

    leak = tmp_path / "leak.csv"
    for con in (open_job_connection(scored),):
        try:
            assert con.execute("select current_setting('enable_external_access')").fetchall() == [(False,)]
            for statement in (
                f"copy segments to '{leak}'",
                f"attach '{tmp_path / 'other.duckdb'}' as other",
                f"select * from read_csv('{REPO / 'README.md'}')",
            ):
                with pytest.raises(duckdb.Error, match="disabled"):
                    con.execute(statement)
        finally:
            con.close()
    reader = connect(scored.snapshot, read_only=True)  # an analyst-side reader opened by the library
    try:
        assert reader.execute("select current_setting('enable_external_access')").fetchall() == [(False,)]
    finally:
        reader.close()
    assert not leak.exists() and not (tmp_path / "other.duckdb").exists()


def test_every_duckdb_connection_in_the_library_disables_external_access() -> None:
    # warehouse.connect() disables it unless asked; any direct duckdb.connect() must pass the setting itself
    offenders = []
    for path in (REPO / "mallscore").rglob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"duckdb\.connect\(([^\n]*)", text):
            if "enable_external_access" not in match.group(1) and path.name != "warehouse.py":
                offenders.append(f"{path.relative_to(REPO)}: {match.group(0)}")
        if re.search(r"external_access\s*=\s*True", text):
            offenders.append(f"{path.relative_to(REPO)}: asks for external access")
    assert offenders == []
