"""The end-to-end demo on synthetic data: synthesise, build features, train, group, score, summarise.

The demo writes synthetic customers and promotes a model, so it runs only on a
warehouse without customers and a models folder without a champion: it can
never mix made-up customers into a real warehouse or replace a real champion.
"""

from __future__ import annotations

from collections.abc import Iterator

from mallscore.errors import UsageError
from mallscore.settings import Settings

_DEMO_HINT = (
    "the demo writes synthetic customers and promotes its own model, so it needs an empty warehouse and models "
    "folder: `make demo`, or `mallscore --warehouse /tmp/demo/demo.duckdb --models-dir /tmp/demo/models demo`"
)


def check_demo_target(settings: Settings) -> None:
    """UsageError (exit 2) when the warehouse holds customers or the models folder a champion.

    The warehouse is looked at first: a damaged one is 78 (ConfigError), whatever the models folder holds.
    """
    from mallscore.registry import CHAMPION_FILE

    if settings.warehouse.exists():
        from mallscore.warehouse import connect

        con = connect(settings.warehouse, read_only=True, lock_timeout=settings.lock_timeout)
        try:
            has_table = con.execute(
                "select count(*) from duckdb_tables() where table_name = 'raw_customers' "
                "and database_name = current_database()"
            ).fetchall()[0][0]
            customers = con.execute("select count(*) from raw_customers").fetchall()[0][0] if has_table else 0
        finally:
            con.close()
        if customers:
            raise UsageError(f"warehouse {settings.warehouse} already holds {customers:,} customers; " + _DEMO_HINT)
    if settings.models_dir.is_dir():
        champions = sorted(d.name for d in settings.models_dir.iterdir() if (d / CHAMPION_FILE).is_file())
        if champions:
            raise UsageError(
                f"models folder {settings.models_dir} already has a champion (spec {', '.join(champions)}); "
                + _DEMO_HINT
            )


def run_demo(settings: Settings, *, rows: int, new_rows: int, seed: int, budget: str = "full") -> Iterator[str]:
    """Run the whole pipeline once; yields lines for the CLI to print (refused on a used warehouse)."""
    check_demo_target(settings)
    from mallscore.specs import get_spec
    from mallscore.synth import synth_customers
    from mallscore.training import get_budget, read_training_set, train_frame
    from mallscore.warehouse import label_counts, open_warehouse, relation_counts

    with open_warehouse(settings) as con:
        known = synth_customers(con, rows, seed)
        fresh = synth_customers(con, new_rows, seed + 1, new=True)
        yield f"[1/5] synthesised {known.rows} scored + {fresh.rows} new customers into {settings.warehouse}"
        counts = relation_counts(con)
        labels = label_counts(con)
        yield (
            f"[2/5] features built: {counts['features_customer']:,} customers, "
            f"{labels['rows']:,} labelled ({labels['positives']:,} high spenders)"
        )
        frame = read_training_set(con, get_spec("default"))
    result = train_frame(frame, settings, "default", budget=get_budget(budget))
    nested = result["nested_cv_roc_auc"]
    yield (
        f"[3/5] trained {result['model_version']}: nested-CV ROC-AUC {nested['mean']:.3f} +- {nested['std']:.3f} "
        f"over {result['n_configs']} configurations, ONNX parity max |dp| {result['onnx']['max_abs_diff']:.1g}, "
        f"{'promoted to champion' if result['promoted'] else 'not promoted: ' + result['promotion_reason']}; "
        f"report {result['report']}"
    )

    from mallscore.groups.job import read_features, train_groups

    with open_warehouse(settings, read_only=True) as con:
        ids, X, population = read_features(con)
    groups = train_groups(settings, X, ids, population)
    yield (
        f"[4/5] behaviour groups {groups['version']}: k = {groups['k']} ({groups['choice']['reason']}); "
        f"{'; '.join(g['name'] for g in groups['groups'])}"
    )

    from mallscore.scoring import score_customers, segment_summary

    run = score_customers(settings)
    drift = ", ".join(f"{d['feature']} {d['status']}" for d in run["drift"])
    yield (
        f"[5/5] scored with {run['model_version']}: {run['rows_read']:,} read, {run['rows_scored']:,} scored, "
        f"{run['rows_rejected']:,} rejected in {run['seconds']['total']:.2f}s; analyst snapshot {run['snapshot']}"
    )
    yield f"      drift against the training population (scoring_drift): {drift or 'none'}"
    yield ""
    yield "segment_summary (from the analyst snapshot):"
    yield f"  {'segment':<14} {'customers':>10} {'mean p':>8} {'share':>7}"
    for row in segment_summary(settings):
        yield (
            f"  {row['segment']:<14} {row['customers']:>10,} {row['mean_p_high_spender']:>8.3f} {row['share']:>7.1%}"
        )
    yield ""
    yield "a few segments (the most likely high spenders among new customers, with the reason):"
    for row in _query(settings, _TOP_PREDICTED, [5]):
        yield "  " + "  ".join(f"{key}={value}" for key, value in row.items())
    yield ""
    yield "group_summary (customers with a known score, by behaviour group and tier):"
    for row in _query(settings, _GROUPS, []):
        yield "  " + "  ".join(f"{key}={value}" for key, value in row.items())
    yield ""
    yield f"analysts: open {settings.snapshot} read-only and query `segments` (README: Querying the segments)"


_TOP_PREDICTED = """
    select customer_id, segment, round(p_high_spender, 3) as p_high_spender, basis, top_reason
    from segments where basis = 'predicted' order by p_high_spender desc, customer_id limit ?
"""
_GROUPS = """
    select behaviour_group, customers, round(mean_spending_score, 1) as mean_score, premium, loyalty, nurture,
           low_priority
    from group_summary order by customers desc
"""


def _query(settings: Settings, sql: str, params: list) -> list[dict]:
    """Rows of ``sql`` read from the analyst snapshot (read-only, like an analyst)."""
    import duckdb

    con = duckdb.connect(str(settings.snapshot), read_only=True, config={"enable_external_access": "false"})
    try:
        cursor = con.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
    finally:
        con.close()
