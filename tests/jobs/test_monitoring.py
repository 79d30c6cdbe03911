"""Model monitoring end to end: drift of real runs against the card's reference, and top_reason on every path.

Real DuckDB warehouses, real onnxruntime runs and the real CLI in subprocesses;
the expected top reasons are computed here from scikit-learn's own
coefficients, independently of the SQL compiled from the graph.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import duckdb
import numpy as np
import pytest

from mallscore.errors import EXIT_DRIFT
from mallscore.scoring import score_customers
from mallscore.scoring.model import load_model
from mallscore.settings import Settings
from mallscore.synth import synth_customers
from mallscore.warehouse import build, connect
from tests.jobs.test_groups import trained  # noqa: F401  (a module fixture: a groups champion)
from tests.scoring_support import FEATURES, REPO, cli_env, query, run_cli, training_rows, write_model

THRESHOLD = 0.45


def _settings(tmp_path) -> Settings:
    return Settings(warehouse=tmp_path / "wh" / "m.duckdb", models_dir=tmp_path / "models", lock_timeout=5)


def _customers(settings: Settings, rows: int, *updates: str, seed: int = 11, known: int = 0) -> None:
    """``rows`` new synthetic customers (drawn like the training population), then ``updates`` on raw_customers."""
    con = connect(settings.warehouse)
    try:
        build(con, check=False)
        if known:
            synth_customers(con, known, seed + 100)
        synth_customers(con, rows, seed, new=True)
        for update in updates:
            con.execute(update)
    finally:
        con.close()


def _drift(run: dict) -> dict:
    return {d["feature"]: d for d in run["drift"]}


@pytest.fixture
def referenced(tmp_path) -> Settings:
    settings = _settings(tmp_path)
    write_model(settings.models_dir, "v1", threshold=THRESHOLD, reference=True)
    return settings


def test_a_batch_drawn_like_the_training_population_raises_no_alert(referenced):
    _customers(referenced, 3000)
    drift = _drift(score_customers(referenced, publish=False))
    assert set(drift) == {*FEATURES, "p_high_spender"}
    assert {d["status"] for d in drift.values()} <= {"ok", "warn"} and drift["age"]["status"] == "ok"
    assert all(d["rows"] == 3000 and 0 <= d["psi"] < 0.1 for d in drift.values())


def test_older_customers_alert_on_age_and_one_gender_on_gender(referenced):
    _customers(referenced, 5000, "update raw_customers set age = 58 + customer_id % 13")
    older = _drift(score_customers(referenced, publish=False))
    assert older["age"]["status"] == "alert" and older["age"]["psi"] >= 0.25
    assert older["gender_female"]["status"] == "ok" and older["annual_income"]["status"] != "alert"

    _customers(referenced, 2000, "update raw_customers set gender = 'Female', updated_at = now()", seed=12)
    women = _drift(score_customers(referenced, publish=False))
    # every customer is female: the reference's male share meets an empty bin, floored, never divided by zero
    assert women["gender_female"]["status"] == "alert" and math.isfinite(women["gender_female"]["psi"])
    assert women["gender_female"]["psi"] >= 0.25 and women["gender_female"]["rows"] == 7000


def test_the_streamed_count_and_the_sql_count_give_the_same_drift(referenced):
    _customers(
        referenced,
        3000,
        "update raw_customers set age = 50 + customer_id % 21",
        "update raw_customers set age = 300 where customer_id % 50 = 0",  # 60 rejected: never counted
    )
    streamed = _drift(score_customers(referenced, publish=False))  # onnxruntime: bins counted in the stream
    assert streamed["age"]["rows"] == 2940
    in_sql = _drift(score_customers(referenced, "all", engine="sql", publish=False))  # counted in SQL
    assert streamed.keys() == in_sql.keys() and streamed["age"]["status"] == "alert"
    for feature in FEATURES:
        assert streamed[feature] == in_sql[feature]
    score, again = streamed["p_high_spender"], in_sql["p_high_spender"]
    assert (score["status"], score["rows"]) == (again["status"], again["rows"])
    assert abs(score["psi"] - again["psi"]) < 1e-3  # float32 and double probabilities may straddle a bin edge


def test_tiny_batches_report_too_few_rows(referenced):
    _customers(referenced, 120, "update raw_customers set age = 65")
    drift = _drift(score_customers(referenced, publish=False))
    assert {(d["status"], d["psi"], d["rows"]) for d in drift.values()} == {("too few rows", None, 120)}


def test_cards_without_a_reference_still_score_and_say_so(tmp_path):
    settings = _settings(tmp_path)
    write_model(settings.models_dir, "v1")
    _customers(settings, 600)
    run = score_customers(settings, publish=False)
    assert run["status"] == "succeeded" and run["rows_scored"] == 600
    assert {(d["status"], d["psi"], d["rows"]) for d in run["drift"]} == {("no reference", None, 600)}
    assert query(settings, "select count(*), count(top_reason) from segments") == [(600, 0)]


def test_fail_on_drift_exits_3_after_committing_the_run(referenced):
    _customers(referenced, 5000, "update raw_customers set age = 58 + customer_id % 13")
    done = run_cli(referenced, "score", "--fail-on-drift")
    assert done.returncode == EXIT_DRIFT == 3, done.stderr
    assert "age alert (psi" in done.stdout  # the summary line names it
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("mallscore: run R") and "committed, but drift is at alert level: age alert" in line
    [(run_id, status, scored)] = query(referenced, "select run_id, status, rows_scored from scoring_runs")
    assert (status, scored) == ("succeeded", 5000) and run_id in line
    assert query(referenced, "select count(*) from segments where run_id = ?", [run_id]) == [(5000,)]
    snapshot = duckdb.connect(str(referenced.snapshot), read_only=True)  # the analyst snapshot has the drift too
    try:
        assert snapshot.execute("select status from scoring_drift where feature = 'age'").fetchall() == [("alert",)]
    finally:
        snapshot.close()

    shown = run_cli(referenced, "drift", "--json")
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    assert result["run_id"] == run_id and [f["feature"] for f in result["features"]][-1] == "p_high_spender"
    assert set(result["features"][0]) == {"feature", "psi", "status", "rows"}
    assert {f["feature"]: f["status"] for f in result["features"]}["age"] == "alert"
    assert "age" in run_cli(referenced, "drift", "--run", run_id).stdout
    assert run_cli(referenced, "drift", "--run", "R-none").returncode == 66

    calm = run_cli(referenced, "score", "--fail-on-drift")  # nothing left to score: no drift, exit 0
    assert calm.returncode == 0, calm.stderr
    assert run_cli(referenced, "score", "--all").returncode == 0  # without the flag an alert is not a failure


def test_drift_settings_are_checked(referenced):
    _customers(referenced, 10)
    for env in ({"MALLSCORE_DRIFT_WARN": "abc"}, {"MALLSCORE_DRIFT_ALERT": "0"}, {"MALLSCORE_DRIFT_WARN": "0.5"}):
        done = run_cli(referenced, "score", **env)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "MALLSCORE_DRIFT" in done.stderr, env


# --- top_reason ------------------------------------------------------------------------------------------


def _binned_pipeline():
    """Quantile bins (one-hot) for age and income, gender passed through: training's "bins" preprocessing."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import KBinsDiscretizer

    x, y = training_rows()
    bins = KBinsDiscretizer(
        n_bins=5, encode="onehot-dense", strategy="quantile", quantile_method="averaged_inverted_cdf"
    )
    prep = ColumnTransformer([("bins5", bins, [0, 1]), ("passthrough", "passthrough", [2])])
    return make_pipeline(prep, LogisticRegression()).fit(x, y)


def _expected_reasons(pipe, card: dict, rows: list[tuple]) -> dict[int, str | None]:
    """The top reason of each (customer_id, age, income, gender, p, observed) row, from scikit-learn's coefficients."""
    reference = card["reference"]["features"]
    means = np.array([f["mean"] for f in reference])
    x = np.array([r[1:4] for r in rows], dtype=np.float32).astype(float)
    coef = pipe[-1].coef_[0]
    prep = pipe[0]
    if hasattr(prep, "transformers_"):  # bins: each continuous feature's one-hot block, then the passthrough
        kb = prep.named_transformers_["bins5"]
        widths = [len(e) - 1 for e in kb.bin_edges_]
        blocks = np.split(coef[: sum(widths)], np.cumsum(widths)[:-1])

        def terms(values):
            onehot = kb.transform(values[:, :2])
            split = np.split(onehot, np.cumsum(widths)[:-1], axis=1)
            return np.column_stack([s @ b for s, b in zip(split, blocks)] + [values[:, 2] * coef[-1]])
    else:

        def terms(values):
            return (values - prep.mean_) / prep.scale_ * coef

    contributions = terms(x) - terms(means[None, :])
    expected, ambiguous = {}, 0
    for j, (row, c) in enumerate(zip(rows, contributions)):
        if row[5] is not None:
            expected[row[0]] = None
            continue
        signed = c if row[4] >= THRESHOLD else -c
        order = np.sort(signed)
        if 0 < order[-1] - order[-2] < 1e-6 * max(1.0, abs(order[-1])):  # exact ties: both take the first
            ambiguous += 1  # a near tie: float32 weights in the graph may order these two either way
            continue
        i = int(np.argmax(signed))
        name, value = FEATURES[i], x[j][i]
        entry = reference[i]
        if "values" in entry:
            words = entry["value_words"][entry["values"].index(value)]
        else:
            words = (
                entry["above"]
                if value > entry["mean"]
                else entry["below"]
                if value < entry["mean"]
                else "about average"
            )
        expected[row[0]] = f"{name}: {words}"
    assert ambiguous < len(rows) / 100
    return expected


@pytest.mark.parametrize("kind", ["scale", "bins"])
def test_top_reason_is_the_largest_contribution_on_both_engines_and_in_export_sql(tmp_path, kind):
    from mallscore.sqlexport import export_sql

    settings = _settings(tmp_path)
    pipe = _binned_pipeline() if kind == "bins" else None
    card = write_model(settings.models_dir, "v1", threshold=THRESHOLD, reference=True, pipeline=pipe)
    if pipe is None:
        from tests.scoring_support import fit_pipeline

        pipe = fit_pipeline()
    _customers(settings, 1500, known=300)
    # the labels the run declares for top_reason's ENUM (mallscore.labels) are exactly the view's words
    model = load_model(settings)
    assert set(model.reason_labels) == set(re.findall(r"'([^']*: [^']*)'", model.reasons_sql))
    reasons = {}
    for engine in ("onnx", "sql"):
        assert score_customers(settings, "all", engine=engine, publish=False)["rows_scored"] == 1800
        rows = query(
            settings,
            "select s.customer_id, f.age, f.annual_income, f.gender_female, s.p_high_spender, f.spending_score, "
            "s.top_reason from segments s join features_customer f using (customer_id) order by s.customer_id",
        )
        reasons[engine] = {r[0]: r[6] for r in rows}
        expected = _expected_reasons(pipe, card, rows)
        assert all(reasons[engine][k] == v for k, v in expected.items()), engine
        assert len(set(expected.values()) - {None}) >= 2  # more than one reason really occurs
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        exported = dict(
            con.execute(f"select customer_id, top_reason from ({export_sql(settings.models_dir)})").fetchall()
        )
    finally:
        con.close()
    assert reasons["onnx"] == reasons["sql"] == exported
    assert sum(v is None for v in exported.values()) == 300  # null exactly where the basis is observed


def test_rescore_and_the_change_feed_carry_the_reason_without_pandas(referenced):
    _customers(referenced, 600)
    run = score_customers(referenced, publish=False)
    stored = dict(query(referenced, "select customer_id, top_reason from segments where customer_id in (2, 3)"))
    assert set(stored) == {2, 3} and None not in stored.values()
    done = run_cli(referenced, "rescore", "2", "3", "--json")
    assert done.returncode == 0, done.stderr
    assert {c["customer_id"]: c["top_reason"] for c in json.loads(done.stdout)["customers"]} == stored
    assert query(
        referenced, "select top_reason from segment_changes where run_id = ? and customer_id = 2", [run["run_id"]]
    ) == [(stored[2],)]
    score_customers(referenced, "all", engine="sql", publish=False)  # replaces every segment: the old ones archived
    history = "select top_reason from segment_history where run_id = ? and customer_id = 2"
    assert query(referenced, history, [run["run_id"]]) == [(stored[2],)]  # the archive keeps the reason
    from tests.jobs.test_score_cli import _DRIVER  # reports the modules a real `rescore` process imported

    report = subprocess.run(
        [sys.executable, "-c", _DRIVER, "rescore", "2"],
        env=cli_env(referenced),
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    imported = json.loads(report.stdout.strip().splitlines()[-1])
    assert imported["code"] in (0, None) and imported["heavy"] == []  # the reasons' path loads no pandas either


@pytest.mark.postgres
def test_tables_published_before_top_reason_gain_it(referenced, pg_server):
    import psycopg

    from mallscore.publish import publish_segments

    _customers(referenced, 600, known=100)
    score_customers(referenced, publish=False)
    publish_segments(referenced, pg_server.url(), "seg_reason")
    with psycopg.connect(pg_server.url(), autocommit=True) as c:  # as an older mallscore left them
        c.execute("alter table seg_reason drop column top_reason")
        c.execute("alter table seg_reason_changes drop column top_reason")
    _customers(referenced, 50, seed=13)
    run = score_customers(referenced, publish=False)
    result = publish_segments(referenced, pg_server.url(), "seg_reason")

    assert (result["mode"], result["reason"]) == ("full", "the target table gained column(s) top_reason")
    columns = "customer_id, segment, p_high_spender, basis, run_id, top_reason"
    with psycopg.connect(pg_server.url(), autocommit=True) as c:
        published = c.execute(f"select {columns} from seg_reason order by customer_id").fetchall()
        feed = c.execute(
            "select customer_id, top_reason from seg_reason_changes where run_id = %s order by customer_id",
            [run["run_id"]],
        ).fetchall()
    assert published == query(referenced, f"select {columns} from segments order by customer_id")
    assert len(published) == 750 and sum(r[5] is not None for r in published) == 650  # observed: null
    assert len(feed) == 50 and all(reason for _, reason in feed)


def test_top_reason_and_behaviour_group_side_by_side_on_both_engines(trained, tmp_path):  # noqa: F811
    import shutil

    source, _ = trained  # a warehouse and a groups champion (tests/jobs/test_groups.py)
    settings = Settings(warehouse=tmp_path / "wh" / source.warehouse.name, models_dir=tmp_path / "models")
    shutil.copytree(source.warehouse.parent, settings.warehouse.parent)
    shutil.copytree(source.models_dir, settings.models_dir)
    write_model(settings.models_dir, "v1", threshold=THRESHOLD, reference=True)
    for engine in ("onnx", "sql"):
        run = score_customers(settings, "all", engine=engine, publish=False)
        assert run["rows_scored"] == 500 and {d["status"] for d in run["drift"]} <= {"ok", "too few rows"}
        shapes = query(
            settings,
            "select basis, behaviour_group is not null, top_reason is not null, count(*) from segments group by all",
        )
        assert {(b, g, r) for b, g, r, _ in shapes} == {("observed", True, False), ("predicted", False, True)}
