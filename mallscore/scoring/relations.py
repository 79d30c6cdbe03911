"""The run's temporary relations: the card's rules and the run's selection, on one connection.

A scoring statement in ``sql/scoring/`` reads fixed names (``run_features``,
``run_candidates``, the macro ``mallscore_segment``); this module creates
them for one run on one connection. The parts that depend on the model card
(which columns, which rules, which tiers) are rendered by
:mod:`mallscore.contract`; every value the card or the run supplies is a
DuckDB session variable set with a bound parameter. Temporary relations and
variables belong to the connection that made them, so the job prepares both
the connection that writes and the cursor that streams.
"""

from __future__ import annotations

from typing import Any

import duckdb

from mallscore.contract import (
    OBSERVED_SCORE_COLUMN,
    Contract,
    Variables,
    check_columns,
    feature_column,
    quote,
    reason_sql,
    segment_sql,
    set_variables,
)

MODES = ("nightly", "all", "adhoc")


def catalog(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """``{relation: {column: type}}`` of the warehouse's main schema, tables and views, in one query."""
    found: dict[str, dict[str, str]] = {}
    for table, column, dtype in con.execute(
        "select table_name, column_name, data_type from duckdb_columns() "
        "where database_name = current_database() and schema_name = 'main' order by table_name, column_index"
    ).fetchall():
        found.setdefault(table, {})[column] = dtype
    return found


def feature_columns(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    """``{column: type}`` of a relation in the warehouse's main schema (empty if it does not exist)."""
    rows = con.execute(
        "select column_name, data_type from duckdb_columns() "
        "where database_name = current_database() and schema_name = 'main' and table_name = ? order by column_index",
        [relation],
    ).fetchall()
    return dict(rows)


def candidate_file(con: duckdb.DuckDBPyConnection, mode: str, model_version: str) -> str:
    """Which ``sql/scoring/candidates_*`` file selects this run's customers.

    A nightly run joins the current segments and this model's earlier
    rejections only when there are any (a join, even with an empty side, made
    the streamed query's memory grow with the number of customers).
    """
    if mode not in MODES:
        raise ValueError(f"unknown scoring mode {mode!r}")
    if mode != "nightly":
        return f"candidates_{mode}"
    scored, rejected = con.execute(
        "select exists (select 1 from segments), exists (select 1 from rejected_rows inner join scoring_runs "
        "using (run_id) where scoring_runs.model_version = ? and scoring_runs.status = 'succeeded')",
        [model_version],
    ).fetchall()[0]
    return "candidates_nightly" if scored or rejected else "candidates_all"


def features_view_sql(contract: Contract, has_score: bool, variables: Variables, groups: Any = None) -> str:
    """``run_features``: every customer of the card's feature table with its features and the contract's reason.

    With a groups model (:class:`mallscore.groups.assign.LoadedGroups`) it also holds the group inputs.
    """
    inner, outer = ([], [])
    if groups is not None:
        from mallscore.groups.assign import view_columns

        inner, outer = view_columns(groups.contract, variables)
    extra_inner = "".join(",\n        " + c for c in inner)
    extra_outer = "".join(",\n        " + c for c in outer)
    cols = [feature_column(i) for i in range(len(contract.features))]
    score = quote(OBSERVED_SCORE_COLUMN) if has_score else "null"
    cast = ",\n        ".join(f"cast({quote(f.name)} as double) as {quote(c)}" for f, c in zip(contract.features, cols))
    raw = ", ".join(f"{quote(f.name)} := cast({quote(c)} as varchar)" for f, c in zip(contract.features, cols))
    floats = ",\n        ".join(
        f"case when reason is null then cast({quote(c)} as float) end as {quote(c)}" for c in cols
    )
    return f"""create or replace temp view run_features as
with features as (
    select
        customer_id,
        updated_at,
        cast({score} as double) as observed_score,
        {cast}{extra_inner}
    from {quote(contract.feature_table)}
),

checked as (
    select *, {reason_sql(contract, variables, cols)} as reason
    from features
),

final as (
    select
        customer_id,
        updated_at,
        observed_score,
        reason,
        case when reason is not null then to_json(struct_pack({raw})) end as raw_values,
        {floats}{extra_outer}
    from checked
)

select * from final"""


def prepare(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    *,
    mode: str,
    model_version: str,
    columns: dict[str, str],
    ids: list[int] | None = None,
    candidates: str | None = None,
    groups: Any = None,
) -> str:
    """Create ``run_features``, ``run_candidates`` and ``mallscore_segment`` on ``con``; return the candidates file.

    ``columns`` is the feature table's ``{column: type}`` (checked against the
    contract here: ConfigError names a missing column). ``candidates`` reuses a
    choice made on another connection of the same run.
    """
    from mallscore.warehouse import sql_query

    has_score = check_columns(contract, columns)
    variables = Variables()
    if groups is not None:
        from mallscore.groups.assign import check_group_columns

        check_group_columns(groups.contract, columns)
    view = features_view_sql(contract, has_score, variables, groups)
    macro = "create or replace temp macro mallscore_segment(p, observed_score) as " + segment_sql(
        contract, variables, "p", "observed_score"
    )
    variables.ref("model_version", model_version)
    variables.ref("ids", [int(i) for i in ids or []])
    variables.ref("groups_version", groups.version if groups is not None else "")  # '' = no groups model
    set_variables(con, variables)
    con.execute(view)
    con.execute(macro)
    candidates = candidates or candidate_file(con, mode, model_version)
    con.execute(sql_query(f"scoring/{candidates}"))
    return candidates


def run_statement(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any]) -> Any:
    """Execute ``sql/scoring/<name>.sql`` with the parameters it names."""
    from mallscore.contract import bound
    from mallscore.warehouse import sql_query

    sql = sql_query(f"scoring/{name}")
    return con.execute(sql, bound(sql, params))
