"""The scoring job on Apache Spark: the same features, the same model SQL and the same rules as the DuckDB job.

Nothing is re-typed for Spark. The features are the warehouse's own view
files (``sql/10_stg_customers.sql``, ``sql/20_features_customer.sql``), turned
into Spark temporary views by :func:`spark_view_sql`, a checked one-line
translation; the model is ``export-sql --dialect spark`` (the ONNX graph
compiled by :mod:`mallscore.onnx_sql`, with the contract's filter, label and
tier rules); the rejected rows' reasons are the contract's own
:func:`~mallscore.contract.reason_sql`, rendered for Spark.

What is not shared: the warehouse's run tables (``scoring_runs``,
``rejected_rows``, ``segment_archive``), the snapshot and the change feed.
The Spark job writes one output folder per run instead: ``segments/`` and
``rejected/`` (Parquet) and ``run.json``, built in a temporary folder beside it
and renamed into place (through Hadoop's FileSystem, so a cluster path works
like a local one), so a failed run leaves nothing half-written.

pyspark is an optional extra (``mallscore[spark]``): it is imported inside the
functions that need it, never by the nightly path.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mallscore.contract import Contract, contract_from_card, reason_sql
from mallscore.errors import BadInputError, ConfigError, InputMissingError, MallscoreError, UsageError
from mallscore.onnx_sql import SPARK

RAW_COLUMNS = ("customer_id", "gender", "age", "annual_income", "spending_score")
FEATURE_RELATIONS = ("stg_customers", "features_customer")  # the warehouse views the model's features come from
_VIEW = re.compile(r"^\s*create or replace view ([a-z_][a-z0-9_]*) as\b", re.IGNORECASE)
_COMMENT = re.compile(r"--[^\n]*")


def spark_view_sql(text: str, relation: str) -> str:
    """A warehouse view file (``create or replace view NAME as ...;``) as a Spark temporary view statement.

    The only translation: ``view`` becomes ``temporary view`` (the views live in
    the job's session, over its ``raw_customers``), comments and the final
    semicolon go (``spark.sql`` runs one statement). ConfigError for any other
    shape, or a view not named ``relation``.
    """
    body = _COMMENT.sub("", text).strip()
    if body.endswith(";"):
        body = body[:-1]
    match = _VIEW.match(body)
    if match is None or match.group(1) != relation or ";" in body or "'--" in text:
        raise ConfigError(f"the {relation} view file is not one `create or replace view {relation} as ...` statement")
    return _VIEW.sub(f"create or replace temporary view {relation} as", body, count=1)


def feature_view_statements() -> list[str]:
    """The feature views, from the SQL files shipped with the package, as Spark statements in build order."""
    from mallscore.warehouse import sql_files

    by_name = {f.relation: f for f in sql_files()}
    missing = [name for name in FEATURE_RELATIONS if name not in by_name]
    if missing:
        raise ConfigError(f"the package has no SQL file for {missing}: reinstall mallscore")
    return [spark_view_sql(by_name[name].text, name) for name in FEATURE_RELATIONS]


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id such as ``S20261127T020000Z-1a2b3c`` (S: a Spark run)."""
    now = now or datetime.now(UTC)
    return f"S{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class SparkJob:
    """A verified model and the job's arguments, checked before Spark starts."""

    card: dict
    contract: Contract
    model_sql: str
    output: str
    input_path: str | None = None
    table: str | None = None


def _has_scheme(path: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path) is not None


def prepare_job(model_dir: Path, output: str, input_path: str | None = None, table: str | None = None) -> SparkJob:
    """Verify the model (card and ONNX sha256, contract) and the arguments; no Spark yet.

    ConfigError (78) for a missing or tampered model, InputMissingError (66)
    for a local input that does not exist, UsageError (2) for bad arguments or
    an output folder that already exists.
    """
    from mallscore import registry
    from mallscore.sqlexport import compile_model_sql

    if (input_path is None) == (table is None):
        raise UsageError("give exactly one of --input PATH and --table NAME")
    if table is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$", table):
        raise UsageError(f"--table {table!r} is not a plain (optionally qualified) table name")
    card_path = Path(model_dir) / registry.CARD_FILE
    if not card_path.is_file():
        raise ConfigError(f"no model card at {card_path}: --model takes a registered model's folder")
    card, onnx_bytes = registry.verify_model(card_path)
    contract = contract_from_card(card)
    if contract.feature_table != "features_customer":
        raise ConfigError(
            f"model {contract.version} reads {contract.feature_table!r}; the Spark job builds features_customer only"
        )
    model_sql = compile_model_sql(card, onnx_bytes, "spark")
    if input_path is not None and not _has_scheme(input_path) and not Path(input_path).exists():
        raise InputMissingError(f"input {input_path} does not exist")
    if not _has_scheme(output) and Path(output).exists():
        raise UsageError(f"output folder {output} already exists; give a new folder (a run never overwrites one)")
    return SparkJob(card, contract, model_sql, output, input_path, table)


def spark_session(master: str | None = None, app_name: str = "mallscore-spark-score", **conf: str) -> Any:
    """A SparkSession: ``master`` if given, else what spark-submit set up (``local[*]`` from plain python); UTC.

    Without ``master`` no master is set here: under ``spark-submit`` the session
    gets the submitted one, and a plain ``python`` run gets spark-submit's own
    default, ``local[*]``. A ``local`` master keeps the driver on the loopback
    interface.
    """
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    settings = {"spark.sql.session.timeZone": "UTC", "spark.ui.showConsoleProgress": "false"}
    if master:
        builder = builder.master(master)
        if master.startswith("local"):
            settings.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    settings.update(conf)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


class _FileSystem:
    """The output folder's Hadoop FileSystem (local, HDFS, object stores), reached through the JVM."""

    def __init__(self, spark: Any, path: str) -> None:
        jvm = spark.sparkContext._jvm
        self._path = jvm.org.apache.hadoop.fs.Path
        self.fs = self._path(path).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(self._path(path)))

    def rename(self, source: str, target: str) -> bool:
        return bool(self.fs.rename(self._path(source), self._path(target)))

    def delete(self, path: str) -> None:
        self.fs.delete(self._path(path), True)

    def write_text(self, path: str, text: str) -> None:
        stream = self.fs.create(self._path(path), False)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()


def _raw_customers(spark: Any, job: SparkJob) -> Any:
    """The input as the job's ``raw_customers``: the raw columns, checked (BadInputError 65 when one is missing)."""
    from pyspark.errors import AnalysisException

    try:
        frame = spark.read.parquet(job.input_path) if job.input_path is not None else spark.table(job.table)
    except AnalysisException as exc:
        where = job.input_path or job.table
        if "PATH_NOT_FOUND" in str(exc) or "TABLE_OR_VIEW_NOT_FOUND" in str(exc):
            raise InputMissingError(f"input {where} does not exist") from None
        raise BadInputError(f"cannot read {where} as a table of customers: {str(exc).splitlines()[0]}") from None
    from pyspark.sql.types import NumericType, StringType

    where = job.input_path or job.table
    types = {field.name.lower(): field.dataType for field in frame.schema.fields}
    missing = [c for c in RAW_COLUMNS if c not in types]
    if missing:
        raise BadInputError(f"input {where} has no column {', '.join(missing)}; it needs {', '.join(RAW_COLUMNS)}")
    for name in RAW_COLUMNS:  # the warehouse's raw_customers types: a number, or text for gender
        wanted = StringType if name == "gender" else NumericType
        if not isinstance(types[name], wanted):
            raise BadInputError(
                f"input {where}: column {name} is {types[name].simpleString()}, not "
                f"{'text' if name == 'gender' else 'a number'}"
            )
    return frame


def run_job(spark: Any, job: SparkJob, run_id: str | None = None) -> dict:
    """Build the features, score, write ``segments/``, ``rejected/`` and ``run.json``, rename into place.

    Rows read = rows scored + rows rejected, or the run fails. On any failure
    the temporary folder is deleted and nothing appears at ``job.output``.
    """
    started = time.perf_counter()
    now = datetime.now(UTC)
    run_id = run_id or new_run_id(now)
    scored_at = now.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    fs = _FileSystem(spark, job.output)
    if fs.exists(job.output):
        raise UsageError(f"output folder {job.output} already exists; give a new folder (a run never overwrites one)")
    tmp = f"{job.output.rstrip('/')}.tmp-{run_id}"
    try:
        from pyspark.sql import functions as F

        stamp = {  # values as literals of the DataFrame API (Spark 3.5 has no parameter markers in views)
            "run_id": F.lit(run_id).cast("string"),
            "scored_at": F.lit(scored_at).cast("timestamp"),
            "model_version": F.lit(job.contract.version).cast("string"),
        }
        raw = _raw_customers(spark, job)
        raw.select(
            F.col("customer_id").cast("bigint").alias("customer_id"),
            F.col("gender").cast("string").alias("gender"),
            "age",
            "annual_income",
            "spending_score",
            stamp["run_id"].alias("load_id"),
            stamp["scored_at"].alias("updated_at"),
        ).createOrReplaceTempView("raw_customers")
        counts = spark.sql(
            "select count(*) as n, count(customer_id) as ids, count(distinct customer_id) as distinct_ids "
            "from raw_customers"
        ).first()
        if counts["ids"] < counts["n"]:
            raise BadInputError(f"{counts['n'] - counts['ids']} input rows have no customer_id (or one not a number)")
        if counts["distinct_ids"] < counts["ids"]:
            raise BadInputError(
                f"{counts['ids'] - counts['distinct_ids']} input rows repeat a customer_id; give one row per customer"
            )
        for statement in feature_view_statements():
            spark.sql(statement)
        segments = spark.sql(job.model_sql).select(
            "customer_id",
            "segment",
            "p_high_spender",
            "predicted_high_spender",
            "basis",
            stamp["model_version"].alias("model_version"),
            stamp["run_id"].alias("run_id"),
            stamp["scored_at"].alias("scored_at"),
            "top_reason",
        )
        values = SPARK.literals()
        rejected = spark.sql(
            f"select customer_id, reason from (select customer_id, {reason_sql(job.contract, values)} as reason "
            "from features_customer) where reason is not null"
        )
        segments.write.parquet(f"{tmp}/segments")
        rejected.write.parquet(f"{tmp}/rejected")
        scored = spark.read.parquet(f"{tmp}/segments").count()
        rejected_count = spark.read.parquet(f"{tmp}/rejected").count()
        if scored + rejected_count != counts["n"]:
            raise MallscoreError(
                f"rows read ({counts['n']}) != rows scored ({scored}) + rows rejected ({rejected_count}); nothing written"
            )
        result = {
            "run_id": run_id,
            "model_version": job.contract.version,
            "model_spec": job.contract.spec,
            "input": job.input_path or job.table,
            "rows_read": int(counts["n"]),
            "rows_scored": int(scored),
            "rows_rejected": int(rejected_count),
            "scored_at": scored_at,
            "spark_version": spark.version,
            "master": spark.sparkContext.master,
            "seconds": round(time.perf_counter() - started, 3),
        }
        fs.write_text(f"{tmp}/run.json", json.dumps(result, indent=2) + "\n")
        if not fs.rename(tmp, job.output):
            raise MallscoreError(f"could not rename {tmp} to {job.output}; nothing written")
        return result
    except BaseException:
        try:
            fs.delete(tmp)
        except Exception:  # the JVM may be gone (interrupted run): the temporary name says what it is
            pass
        raise


def _quiet(spark: Any) -> None:
    """The job reports a failure in one line: no JVM log lines and no PySpark query-context dumps on stderr."""
    import logging

    spark.sparkContext.setLogLevel("OFF")
    try:
        from pyspark.logger import PySparkLogger  # Spark 4
    except ImportError:
        return
    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    """``jobs/spark_score.py``: parse, verify the model before Spark starts, run; exit codes like the CLI."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="spark_score.py", description="Score customers on Apache Spark with a registered mallscore model."
    )
    parser.add_argument("--model", required=True, metavar="MODEL_DIR", help="a registered model's folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", metavar="PATH", help="Parquet with the raw_customers columns")
    source.add_argument("--table", metavar="NAME", help="a Spark catalog table with the raw_customers columns")
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="a new folder for segments/, rejected/, run.json"
    )
    parser.add_argument("--master", metavar="URL", help="Spark master [default: spark-submit's, else local[*]]")
    args = parser.parse_args(argv)  # exit 2 with a usage line on bad arguments
    try:
        job = prepare_job(Path(args.model), args.output, args.input, args.table)
        try:
            import pyspark  # noqa: F401
        except ImportError:
            raise ConfigError("pyspark is not installed: pip install 'mallscore[spark]'") from None
        spark = spark_session(args.master)
        _quiet(spark)
        try:
            result = run_job(spark, job)
        finally:
            spark.stop()
    except MallscoreError as exc:
        print(f"spark_score: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("spark_score: interrupted; nothing written", file=sys.stderr)
        return 130
    except Exception as exc:  # Spark's own failures (a lost executor, a full disk): one line, exit 1
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"spark_score: the Spark run failed ({type(exc).__name__}: {first}); nothing written", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
