"""Behaviour groups end to end: `groups train`, the nightly assignment, the feed, export-sql, tampering.

One groups model is trained (through the real CLI) for the module and copied into each test's
models folder; real DuckDB files, real onnxruntime sessions, real subprocesses.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest

from mallscore import registry
from mallscore.groups.assign import load_groups
from mallscore.settings import Settings
from tests.scoring_support import query, run_cli, seed_customers, write_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Settings, dict]:
    """A warehouse of 400 known + 100 new customers and a groups champion trained on it by the CLI."""
    root = tmp_path_factory.mktemp("groups")
    settings = Settings(warehouse=root / "wh" / "mallscore.duckdb", models_dir=root / "models", lock_timeout=5)
    seed_customers(settings, known=400, new=100)
    done = run_cli(settings, "groups", "train", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    return settings, json.loads(done.stdout)


@pytest.fixture
def setup(trained, tmp_path) -> Settings:
    """A copy of the trained warehouse and models, plus a classifier champion v1."""
    source, _ = trained
    settings = Settings(warehouse=tmp_path / "wh" / "mallscore.duckdb", models_dir=tmp_path / "models", lock_timeout=5)
    shutil.copytree(source.warehouse.parent, settings.warehouse.parent)
    shutil.copytree(source.models_dir, settings.models_dir)
    write_model(settings.models_dir, "v1")
    return settings


def _onnx_groups(settings: Settings, X: np.ndarray) -> list[str]:
    groups = load_groups(settings.models_dir)
    feeds = {n: X[:, [j]].astype(np.float32) for j, n in enumerate(groups.contract.feature_names)}
    labels = groups.session.run(["label"], feeds)[0]
    return [groups.contract.names[int(i)] for i in labels]


def test_groups_train_reports_k_silhouette_groups_and_registers_a_verified_champion(trained):
    settings, result = trained

    assert result["k"] == 5  # the synthetic customers are drawn from five income x score groups
    assert {str(k) for k in range(2, 11)} == set(result["silhouette"])
    assert all(set(v) == {"mean", "std"} for v in result["silhouette"].values())
    assert len(result["groups"]) == 5 and sum(g["size"] for g in result["groups"]) == 400
    assert {"annual_income", "spending_score"} == set(result["groups"][0]["centre"])
    assert result["promoted"] and result["onnx"]["mismatches"] == 0 and result["onnx"]["rows_checked"] == 10_400
    card, _ = registry.verify_model(registry.champion_card_path(settings.models_dir, "groups"))
    assert card["choice"]["k"] == 5 and "best mean silhouette" in card["choice"]["reason"]
    assert Path(result["report"]).read_text().count("data:image/png;base64,") == 3


def test_models_compare_and_promote_treat_a_groups_model_as_one(setup):
    trained = run_cli(setup, "groups", "train", "--k", "3", "--no-promote", "--json", timeout=300)
    assert trained.returncode == 0, trained.stderr
    version = json.loads(trained.stdout)["version"]

    compared = run_cli(setup, "models", "compare", version)
    promoted = run_cli(setup, "models", "promote", version)

    assert compared.returncode == 2 and "is a behaviour-groups model" in compared.stderr, compared.stderr
    assert "Traceback" not in compared.stderr
    # no classifier comparison is attempted (it would fail on the groups card's contract)
    assert promoted.returncode == 0 and "comparison" not in promoted.stdout + promoted.stderr, promoted.stderr


def test_the_nightly_run_groups_customers_with_a_score_and_no_one_else(setup):
    done = run_cli(setup, "score", "--json")
    assert done.returncode == 0, done.stderr

    rows = query(
        setup,
        "select s.customer_id, s.basis, s.behaviour_group, s.behaviour_model_version, f.annual_income, "
        "f.spending_score from segments s join features_customer f using (customer_id) order by customer_id",
    )
    known = [r for r in rows if r[5] is not None]
    assert len(rows) == 500 and len(known) == 400
    assert all(r[2] is None for r in rows if r[5] is None)  # new customers: no group, never a guess
    X = np.array([[r[4], r[5]] for r in known], dtype=float)
    assert [r[2] for r in known] == _onnx_groups(setup, X)
    version = registry.champion(setup.models_dir, "groups")
    assert {r[3] for r in rows} == {version}
    summary = query(setup, "select behaviour_group, customers, share from group_summary")
    counted: dict = {}
    for r in known:
        counted[r[2]] = counted.get(r[2], 0) + 1
    assert {g: n for g, n, _ in summary} == counted and abs(sum(r[2] for r in summary) - 1) < 1e-9
    rescored = run_cli(setup, "rescore", *[r[0] for r in rows[:3]], "--json")
    assert [c["behaviour_group"] for c in json.loads(rescored.stdout)["customers"]] == [r[2] for r in rows[:3]]


def test_the_sql_engine_assigns_the_same_groups_as_onnxruntime(setup):
    assert run_cli(setup, "score").returncode == 0
    onnx_rows = query(setup, "select customer_id, behaviour_group from segments order by customer_id")

    done = run_cli(setup, "score", "--all", "--engine", "sql")

    assert done.returncode == 0, done.stderr
    assert query(setup, "select customer_id, behaviour_group from segments order by customer_id") == onnx_rows


def test_without_a_groups_champion_scoring_writes_no_group(scored_setup):
    done = run_cli(scored_setup, "score")

    assert done.returncode == 0, done.stderr
    assert query(
        scored_setup, "select count(*), count(behaviour_group), count(behaviour_model_version) from segments"
    ) == [(500, 0, 0)]


def test_a_customer_changing_group_is_a_change_and_a_new_champion_regroups_everyone(setup):
    assert run_cli(setup, "score").returncode == 0
    before = dict(query(setup, "select customer_id, segment from segments"))
    done = run_cli(setup, "groups", "train", "--k", "3", "--no-promote", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    assert run_cli(setup, "models", "promote", json.loads(done.stdout)["version"]).returncode == 0

    assert run_cli(setup, "score").returncode == 0  # nightly: the groups model changed, so everyone is rescored

    runs = query(setup, "select run_id from scoring_runs where status = 'succeeded' order by started_at")
    feed = query(
        setup,
        "select customer_id, change, previous_segment, segment, previous_behaviour_group, behaviour_group "
        "from segment_changes where run_id = ?",
        [runs[-1][0]],
    )
    moved = [r for r in feed if r[4] != r[5]]
    assert moved and all(r[1] == "changed" and r[2] == r[3] == before[r[0]] for r in moved)
    assert all(r[4] is not None for r in feed)  # customers without a score have no group to change
    csv = run_cli(setup, "changes", "--format", "csv").stdout.splitlines()
    assert csv[0].endswith("previous_behaviour_group,behaviour_group,top_reason") and len(csv) == len(feed) + 1


@pytest.mark.parametrize(
    "dialect",
    [
        "duckdb",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("spark", marks=pytest.mark.xdist_group("spark")),
    ],
)
def test_export_sql_assigns_the_groups_onnxruntime_does(setup, tmp_path, request, dialect):
    sql = run_cli(setup, "export-sql", "--dialect", dialect).stdout
    rng = np.random.default_rng(5)
    n = 20_000
    income = np.round(rng.uniform(15, 140, n), 1)  # the classifier v1 quarantines incomes outside 15..140
    score = rng.integers(1, 101, n).astype(float)
    rows = [(i, 40.0, float(income[i]), 1.0, None if i % 10 == 0 else float(score[i])) for i in range(n)]
    create = (
        "create table features_customer (customer_id bigint, age double precision, annual_income double precision, "
        "gender_female double precision, spending_score double precision)"
    )
    if dialect == "duckdb":
        con = duckdb.connect(str(tmp_path / "other.duckdb"))
        con.execute(create)
        import pyarrow as pa

        con.register("src", pa.table(list(zip(*rows)), names=["id", "age", "income", "female", "score"]))
        con.execute("insert into features_customer select * from src")
        got = con.execute(f"select customer_id, behaviour_group from ({sql}) as e order by customer_id").fetchall()
    elif dialect == "spark":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / "features.parquet"
        names = ["customer_id", "age", "annual_income", "gender_female", "spending_score"]
        pq.write_table(pa.table(list(zip(*rows)), names=names), path)
        spark = request.getfixturevalue("spark")
        spark.read.parquet(str(path)).createOrReplaceTempView("features_customer")
        got = sorted(tuple(r) for r in spark.sql(f"select customer_id, behaviour_group from ({sql}) as e").collect())
    else:
        import psycopg

        with psycopg.connect(request.getfixturevalue("pg_server").url(), autocommit=True) as c:
            c.execute("drop schema if exists groups_parity cascade")
            c.execute("create schema groups_parity")
            c.execute("set search_path = groups_parity")
            c.execute(create)
            with c.cursor().copy("copy features_customer from stdin") as copy:
                for row in rows:
                    copy.write_row(row)
            got = c.execute(f"select customer_id, behaviour_group from ({sql}) as e order by customer_id").fetchall()

    expected = _onnx_groups(setup, np.column_stack([income, score]))
    assert len(got) == n
    assert [g for _, g in got] == [None if i % 10 == 0 else expected[i] for i in range(n)]


@pytest.mark.parametrize("what", ["onnx", "card"])
def test_a_tampered_groups_model_is_refused_before_anything_is_written(setup, what):
    version = registry.champion(setup.models_dir, "groups")
    folder = setup.models_dir / "groups" / version
    if what == "onnx":  # still a valid graph: only its sha256 can tell (the centres moved)
        import onnx
        from onnx import numpy_helper

        model = onnx.load_from_string((folder / "model.onnx").read_bytes())
        biggest = max(model.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
        biggest.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(biggest) + 1.0, biggest.name))
        (folder / "model.onnx").write_bytes(model.SerializeToString())
    else:
        card = json.loads((folder / "card.json").read_text())
        card["groups"][0]["name"] = "vip"
        (folder / "card.json").write_text(json.dumps(card))

    done = run_cli(setup, "score")
    shown = run_cli(setup, "models", "show", version)

    assert done.returncode == 78 and "groups" in done.stderr and "Traceback" not in done.stderr
    assert shown.returncode == 78
    assert query(setup, "select count(*) from segments") == [(0,)]
    assert query(setup, "select count(*) from scoring_runs where status = 'succeeded'") == [(0,)]


@pytest.mark.postgres
def test_publish_adds_the_group_columns_to_an_older_target_and_keeps_nulls(tmp_path, pg_server):
    import psycopg

    from mallscore.publish import publish_segments
    from tests.helpers import warehouse_with_segments

    settings = warehouse_with_segments(tmp_path, 200)
    con = duckdb.connect(str(settings.warehouse))
    con.execute("update segments set behaviour_group = 'g' || (customer_id % 3) where customer_id % 2 = 0")
    con.close()
    columns = (
        "customer_id bigint primary key, segment text not null, p_high_spender double precision not null, "
        "predicted_high_spender boolean not null, basis text not null, model_version text not null, run_id text "
        "not null, scored_at timestamp not null, customer_updated_at timestamp not null"
    )
    with psycopg.connect(pg_server.url(), autocommit=True) as c:  # what an older mallscore published
        c.execute(f"create table seg_before_groups ({columns})")
        c.execute("insert into seg_before_groups values (1, 'gold', 0.5, true, 'model', 'm0', 'R0', now(), now())")

    result = publish_segments(settings, pg_server.url(), "seg_before_groups")

    assert result["mode"] == "full"
    with psycopg.connect(pg_server.url(), autocommit=True) as c:
        published = c.execute(
            "select customer_id, behaviour_group, behaviour_model_version from seg_before_groups order by customer_id"
        ).fetchall()
    expected = query(settings, "select customer_id, behaviour_group, behaviour_model_version from segments order by 1")
    assert published == expected and sum(g is None for _, g, _ in published) == 100


def test_a_retrain_with_barely_moved_centres_keeps_the_names(setup):
    from mallscore.groups.job import read_features, train_groups
    from mallscore.warehouse import open_warehouse

    before = registry.load_card(setup.models_dir, registry.champion(setup.models_dir, "groups"))
    with open_warehouse(setup, read_only=True) as con:
        ids, X, population = read_features(con)
    moved = X + np.random.default_rng(9).normal(0, 0.5, X.shape)  # the same customers, slightly different

    result = train_groups(setup, moved, ids, population)

    after = registry.load_card(setup.models_dir, result["version"])
    assert sorted(g["name"] for g in after["groups"]) == sorted(g["name"] for g in before["groups"])
    assert sorted(result["names_kept"]) == sorted(g["name"] for g in before["groups"])
    old = {g["name"]: g["centre"] for g in before["groups"]}
    for g in after["groups"]:  # each name stays with the centre it described
        assert abs(g["centre"]["annual_income"] - old[g["name"]]["annual_income"]) < 3
        assert abs(g["centre"]["spending_score"] - old[g["name"]]["spending_score"]) < 3
