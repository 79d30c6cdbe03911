"""export-sql: the model compiled to SQL matches onnxruntime on >= 100,000 rows, on DuckDB and PostgreSQL."""

from __future__ import annotations

import hashlib

import duckdb
import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

import mallscore.cli  # noqa: F401  (registers commands)
from mallscore import registry
from mallscore.cli.app import app
from mallscore.sqlexport import ModelNotExpressibleError, compile_model_sql
from mallscore.synth import synth_customers
from mallscore.warehouse import build, connect
from tests.scoring_support import training_rows

FEATURES = ["age", "annual_income", "gender_female"]
TIERS = [
    {"name": "gold", "min_p": 0.72, "min_score": 80},
    {"name": "silver", "min_p": 0.55, "min_score": 60},
    {"name": "bronze", "min_p": 0.35, "min_score": 40},
    {"name": "rest", "min_p": 0.0, "min_score": 0},
]
PARITY_ROWS = 100_000
runner = CliRunner()


def _pipelines():
    """Logistic pipelines as training builds them: scaled, quantile bins + passthrough, and a mix with one-hot."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder, StandardScaler

    from mallscore.specs import get_spec
    from mallscore.training.budget import Budget
    from mallscore.training.tuning import make_pipeline

    spec = get_spec("default")
    mixed = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("scale", StandardScaler(), [0, 1]),
                        ("bins", KBinsDiscretizer(n_bins=4, encode="onehot-dense", strategy="uniform"), [1]),
                        ("onehot", OneHotEncoder(handle_unknown="ignore"), [2]),
                    ]
                ),
            ),
            (
                "clf",
                LogisticRegression(solver="liblinear", l1_ratio=1.0, C=0.05, class_weight="balanced", random_state=0),
            ),
        ]
    )
    return {
        "scale": make_pipeline(spec, Budget("t"), {"preprocessing": "scale", "C": 10.0}),
        "bins": make_pipeline(spec, Budget("t"), {"preprocessing": "bins5", "C": 1.0}),
        "mixed": mixed,
    }


def _card(version: str, data: bytes, threshold: float) -> dict:
    return {
        "card_format": registry.CARD_FORMAT,
        "spec": "default",
        "version": version,
        "feature_table": "features_customer",
        "features": [
            {"name": "age", "type": "float32", "min": 12.0, "max": 120.0, "values": None},
            {"name": "annual_income", "type": "float32", "min": 0.0, "max": 130.0, "values": None},
            {"name": "gender_female", "type": "float32", "min": None, "max": None, "values": [0.0, 1.0]},
        ],
        "onnx": {
            "file": "model.onnx",
            "sha256": hashlib.sha256(data).hexdigest(),
            "inputs": FEATURES,
            "input_shape": [None, 1],
            "input_type": "float32",
            "probability_output": "probabilities",
            "probability_column": 1,
        },
        "threshold": threshold,
        "tiers": TIERS,
        "promotable": True,
    }


def _midpoint_threshold(p: np.ndarray, quantile: float) -> float:
    """A threshold as training stores it: the midpoint between two neighbouring distinct probabilities.

    (A quantile of tied probabilities would equal some customer's probability exactly; float32 and
    double then fall on either side of it by design, which is a property of the card, not of the SQL.)
    """
    distinct = np.unique(p)
    i = max(int(np.searchsorted(distinct, np.quantile(p, quantile))), 1)
    return float((distinct[i - 1] + distinct[i]) / 2)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{name: (card, onnx bytes)} for each pipeline, registered in a models folder ("scale" is champion)."""
    from mallscore.training.export import convert

    x, y = training_rows(3000, seed=1)
    models_dir = tmp_path_factory.mktemp("models")
    out = {"_pipes": {}}
    for name, pipe in _pipelines().items():
        pipe.fit(x, y)
        data = convert(pipe, FEATURES)
        threshold = _midpoint_threshold(pipe.predict_proba(x)[:, 1], 0.45)
        registry.register(models_dir, _card(f"v-{name}", data, threshold), {"model.onnx": data})
        out[name] = (registry.load_card(models_dir, f"v-{name}"), data)
        out["_pipes"][name] = pipe
    registry.promote(models_dir, "v-scale", reason="test")
    out["_dir"] = models_dir
    return out


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """A real warehouse with 100,000 synthetic customers, fractional incomes, a few rows outside the contract."""
    path = tmp_path_factory.mktemp("wh") / "parity.duckdb"
    con = connect(path)
    build(con)
    synth_customers(con, PARITY_ROWS - 50, seed=21)
    synth_customers(con, 50, seed=22, new=True)
    con.execute(
        "update raw_customers set annual_income = annual_income + (customer_id % 100) / 37.0 where customer_id % 3 = 0"
    )
    con.execute("update raw_customers set annual_income = 131 where customer_id in (5, 6)")  # above the card's max
    con.close()
    return path


def _features(path) -> dict:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            "select customer_id, age, annual_income, gender_female, spending_score from features_customer "
            "order by customer_id"
        ).fetchnumpy()
    finally:
        con.close()


def _expected(card: dict, data: bytes, feats: dict) -> dict:
    """onnxruntime's probabilities and the card's rules applied to them, on the rows the contract admits."""
    import onnxruntime as ort

    keep = np.ones(len(feats["customer_id"]), bool)
    for f in card["features"]:
        col = feats[f["name"]]
        keep &= np.isfinite(col)
        if f["min"] is not None:
            keep &= col >= f["min"]
        if f["max"] is not None:
            keep &= col <= f["max"]
        if f["values"] is not None:
            keep &= np.isin(col, f["values"])
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    feeds = {n: feats[n][keep].astype(np.float32).reshape(-1, 1) for n in FEATURES}
    p = session.run(["probabilities"], feeds)[0][:, 1].astype(np.float64)
    score = np.ma.filled(np.ma.asarray(feats["spending_score"]).astype(float), np.nan)[keep]  # NaN where unknown
    known = np.isfinite(score)
    tiers = np.full(p.shape, card["tiers"][-1]["name"], dtype=object)
    for tier in reversed(card["tiers"]):  # the job's rule: the observed score decides where it is known
        tiers[(known & (score >= tier["min_score"])) | (~known & (p >= tier["min_p"]))] = tier["name"]
    return {"customer_id": feats["customer_id"][keep], "p": p, "label": p >= card["threshold"], "segment": tiers}


def _compare(rows: list[tuple], expected: dict) -> float:
    rows = sorted(rows)
    ids = np.array([r[0] for r in rows])
    assert len(ids) == len(expected["customer_id"]) and (ids == expected["customer_id"]).all()
    p = np.array([r[1] for r in rows], dtype=float)
    diff = float(np.abs(p - expected["p"]).max())
    assert diff < 1e-6
    assert [bool(r[2]) for r in rows] == expected["label"].tolist()
    assert [r[3] for r in rows] == expected["segment"].tolist()
    return diff


@pytest.mark.parametrize("name", ["scale", "bins", "mixed"])
def test_parity_with_onnxruntime_on_duckdb(models, warehouse, name):
    card, data = models[name]
    feats = _features(warehouse)
    expected = _expected(card, data, feats)
    sql = compile_model_sql(card, data, "duckdb")
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute(sql).fetchall()
    finally:
        con.close()
    assert len(rows) >= PARITY_ROWS - 52  # only the 50 new-customer-free rows outside the contract drop out
    diff = _compare(rows, expected)
    assert 0 < diff  # float32 vs double really differ, so the tolerance is doing work
    assert len(set(expected["segment"])) == 4 and expected["label"].any() and not expected["label"].all()


def _pg_features(c, feats: dict) -> None:
    """The parity warehouse's features_customer as a PostgreSQL table (once per server)."""
    if c.execute("select to_regclass('features_customer')").fetchall()[0][0] is None:
        c.execute(
            "create table features_customer (customer_id bigint primary key, age double precision, "
            "annual_income double precision, gender_female double precision, spending_score double precision)"
        )
        with c.cursor().copy("copy features_customer from stdin") as copy:
            for row in zip(*(np.ma.asarray(feats[k]).tolist() for k in ("customer_id", *FEATURES, "spending_score"))):
                copy.write_row(row)


@pytest.mark.postgres
@pytest.mark.parametrize("name", ["scale", "bins", "mixed"])
def test_parity_with_onnxruntime_on_postgres(models, warehouse, pg_server, name):
    card, data = models[name]
    feats = _features(warehouse)
    with psycopg.connect(pg_server.url(), autocommit=True) as c:
        _pg_features(c, feats)
        rows = c.execute(compile_model_sql(card, data, "postgres")).fetchall()
    _compare(rows, _expected(card, data, feats))


def reference_card(models, name: str) -> tuple[dict, bytes]:
    """A model of the ``models`` fixture with the reference distributions of its training rows (top_reason on)."""
    from mallscore.monitoring import build_reference

    card, data = models[name]
    x, _ = training_rows(3000, seed=1)
    x32 = x.astype(np.float32).astype(float)
    p = models["_pipes"][name].predict_proba(x32)[:, 1]
    return {**card, "reference": build_reference(card["features"], x32, p)}, data


def top_reasons(con, sql: str) -> dict:
    return dict(con.execute(f"select customer_id, top_reason from ({sql}) as exported").fetchall())


@pytest.mark.postgres
@pytest.mark.parametrize("name", ["bins", "mixed"])
def test_top_reason_is_the_same_on_postgres_as_on_duckdb(models, warehouse, pg_server, name):
    card, data = reference_card(models, name)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        expected = top_reasons(con, compile_model_sql(card, data, "duckdb"))
    finally:
        con.close()
    with psycopg.connect(pg_server.url(), autocommit=True) as c:
        _pg_features(c, _features(warehouse))
        ours = top_reasons(c, compile_model_sql(card, data, "postgres"))
    assert ours == expected and len(set(expected.values()) - {None}) >= 3


def test_export_sql_cli_prints_the_champion_and_runs(models, warehouse):
    result = runner.invoke(app, ["--models-dir", str(models["_dir"]), "export-sql", "--dialect", "postgres"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("-- mallscore export-sql: model default/v-scale")
    by_version = runner.invoke(app, ["--models-dir", str(models["_dir"]), "export-sql", "--model", "v-bins"])
    assert "default/v-bins" in by_version.stdout
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        assert con.execute(f"select count(*) from ({by_version.stdout})").fetchall()[0][0] >= PARITY_ROWS - 52
    finally:
        con.close()


def test_tampered_or_missing_models_exit_78(models, tmp_path):
    import shutil

    copy = tmp_path / "models"
    shutil.copytree(models["_dir"], copy)
    onnx_file = copy / "default" / "v-scale" / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")
    tampered = runner.invoke(app, ["--models-dir", str(copy), "export-sql"])
    assert tampered.exit_code == 78 and "sha256" in tampered.stderr
    missing = runner.invoke(app, ["--models-dir", str(tmp_path / "none"), "export-sql"])
    assert missing.exit_code == 78 and "no champion" in missing.stderr
    bad_dialect = runner.invoke(app, ["--models-dir", str(models["_dir"]), "export-sql", "--dialect", "oracle"])
    assert bad_dialect.exit_code == 2


def _convert(pipe, zipmap: bool = False) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    options = {} if zipmap else {id(pipe.steps[-1][1]): {"zipmap": False}}
    return convert_sklearn(
        pipe,
        initial_types=[(n, FloatTensorType([None, 1])) for n in FEATURES],
        options=options,
        target_opset={"": 17, "ai.onnx.ml": 3},
    ).SerializeToString()


@pytest.mark.parametrize(
    "case, message",
    [
        ("forest", "TreeEnsembleClassifier"),
        ("zipmap", "ZipMap"),
        ("multiclass", "3 classes"),
        ("svm", "SVMClassifier"),
    ],
)
def test_models_it_cannot_express_are_refused_with_a_reason(case, message, models, tmp_path):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = training_rows(600, seed=2)
    if case == "forest":
        from sklearn.compose import ColumnTransformer

        pipe = Pipeline(
            [
                ("prep", ColumnTransformer([("all", "passthrough", [0, 1, 2])])),
                ("clf", RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0)),
            ]
        ).fit(x, y)
        data = _convert(pipe)
    elif case == "zipmap":
        data = _convert(Pipeline([("s", StandardScaler()), ("clf", LogisticRegression())]).fit(x, y), zipmap=True)
    elif case == "multiclass":
        y3 = np.digitize(x[:, 0], [30, 45])
        data = _convert(Pipeline([("s", StandardScaler()), ("clf", LogisticRegression())]).fit(x, y3))
    else:
        from sklearn.compose import ColumnTransformer
        from sklearn.svm import SVC

        pipe = Pipeline(
            [
                ("prep", ColumnTransformer([("s", StandardScaler(), [0, 1, 2])])),
                ("clf", SVC(probability=True, random_state=0)),
            ]
        ).fit(x[:200], y[:200])
        data = _convert(pipe)
    card = _card("v-x", data, 0.5)
    with pytest.raises(ModelNotExpressibleError, match=message):
        compile_model_sql(card, data, "duckdb")
    registry.register(tmp_path / "m", card, {"model.onnx": data})
    result = runner.invoke(app, ["--models-dir", str(tmp_path / "m"), "export-sql", "--model", "v-x"])
    assert result.exit_code == 78 and len(result.stderr.strip().splitlines()) == 1
    assert "export-sql cannot express model default/v-x exactly" in result.stderr and message in result.stderr


def test_the_sql_scores_like_the_scoring_job_on_the_same_warehouse(tmp_path):
    """What `score --engine sql` will rest on: the exported SQL against `score` (onnxruntime) on one warehouse."""
    from mallscore.scoring import score_customers
    from mallscore.settings import Settings
    from mallscore.sqlexport import export_sql
    from tests.scoring_support import seed_customers, write_model

    settings = Settings(warehouse=tmp_path / "wh.duckdb", models_dir=tmp_path / "models", lock_timeout=5)
    write_model(settings.models_dir, "v1", threshold=0.45, reference=True)
    seed_customers(settings, known=3000, new=2000)
    run = score_customers(settings, "all", publish=False)
    assert run["rows_scored"] == 5000

    sql = export_sql(settings.models_dir, dialect="duckdb")
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        job = {
            r[0]: r[1:]
            for r in con.execute(
                "select customer_id, p_high_spender, predicted_high_spender, segment, basis, top_reason from segments"
            ).fetchall()
        }
        ours = {r[0]: r[1:] for r in con.execute(sql).fetchall()}
    finally:
        con.close()
    assert ours.keys() == job.keys()
    assert max(abs(ours[k][0] - job[k][0]) for k in job) < 1e-6
    assert all(ours[k][1] == job[k][1] for k in job)  # same label on every customer
    assert all(ours[k][2:] == job[k][2:] for k in job)  # same segment, basis and top_reason for every customer
    assert len({job[k][4] for k in job if job[k][3] == "predicted"} - {None}) >= 2  # real reasons, not all null
    assert sum(job[k][3] == "predicted" for k in job) == 2000  # both bases really occur


TYPED_ROWS = 3_000


def _income_edges(pipes: dict) -> np.ndarray:
    """Every bin edge the fitted pipelines put on annual_income (column 1)."""
    edges = [pipes["bins"].named_steps["prep"].named_transformers_["bins5"].bin_edges_[1]]
    edges.append(pipes["mixed"].named_steps["prep"].named_transformers_["bins"].bin_edges_[0])
    return np.concatenate(edges)


@pytest.fixture(scope="module")
def typed_features(models, pg_server):
    """A mall's own feature table in PostgreSQL: integer age and gender, double precision income, a few bad rows.

    Lives in its own schema (found through search_path), so it never meets the double-only table above.
    Every customer is new (spending_score NULL): the segment is the model's tier whatever the score rule.
    Some incomes sit one double step either side of a bin edge rounded to float32: the graph sees the
    edge itself there, so SQL that skips the float32 rounding puts them in another bin.
    """
    rng = np.random.default_rng(31)
    age = rng.integers(12, 121, TYPED_ROWS).astype(float)
    income = rng.uniform(0.0, 130.0, TYPED_ROWS)
    income[::3], income[1::3] = np.round(income[::3]), np.round(income[1::3], 2)  # whole, cents, full precision
    gender = rng.integers(0, 2, TYPED_ROWS).astype(float)
    edges = _income_edges(models["_pipes"]).astype(np.float32).astype(float)
    edges = edges[(edges > 0) & (edges < 130)]
    near = np.concatenate([np.nextafter(edges, -np.inf), edges, np.nextafter(edges, np.inf)])
    income[10 : 10 + near.size] = near
    age[:3], income[3:6], gender[6:8] = [11.0, 121.0, np.nan], [130.5, -1.0, np.nan], [2.0, np.nan]  # outside the card
    feats = {
        "customer_id": np.arange(1, TYPED_ROWS + 1),
        "age": age,
        "annual_income": income,
        "gender_female": gender,
        "spending_score": np.full(TYPED_ROWS, np.nan),
    }

    def value(x: float, kind=float):
        return None if np.isnan(x) else kind(x)

    with psycopg.connect(pg_server.url(), autocommit=True) as c:
        c.execute("drop schema if exists typed_features cascade")
        c.execute("create schema typed_features")
        c.execute(
            "create table typed_features.features_customer (customer_id bigint primary key, age integer, "
            "annual_income double precision, gender_female integer, spending_score integer, updated_at timestamp)"
        )
        with c.cursor().copy(
            "copy typed_features.features_customer (customer_id, age, annual_income, gender_female) from stdin"
        ) as copy:
            for i in range(TYPED_ROWS):
                copy.write_row((i + 1, value(age[i], int), value(income[i]), value(gender[i], int)))
    return feats


@pytest.mark.postgres
@pytest.mark.parametrize("name", ["scale", "bins", "mixed"])
def test_export_sql_output_runs_on_postgres_over_integer_and_double_columns(models, typed_features, pg_server, name):
    card, data = models[name]
    printed = runner.invoke(
        app, ["--models-dir", str(models["_dir"]), "export-sql", "--dialect", "postgres", "--model", f"v-{name}"]
    )
    assert printed.exit_code == 0, printed.output
    with psycopg.connect(pg_server.url(), autocommit=True) as c:
        c.execute("set search_path to typed_features")
        types = dict(
            c.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'typed_features' and table_name = 'features_customer'"
            ).fetchall()
        )
        assert (types["age"], types["annual_income"], types["gender_female"]) == (
            "integer",
            "double precision",
            "integer",
        )
        rows = c.execute(printed.stdout).fetchall()
    expected = _expected(card, data, typed_features)
    assert len(expected["customer_id"]) == TYPED_ROWS - 8  # the rows outside the card drop out
    _compare(rows, expected)
    assert len(set(expected["segment"])) > 1 and expected["label"].any() and not expected["label"].all()
