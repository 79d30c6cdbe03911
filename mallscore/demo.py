"""The end-to-end demo on synthetic data: what exists of the pipeline, in order."""

from __future__ import annotations

from typing import Iterator

from mallscore.settings import Settings


def run_demo(settings: Settings, *, rows: int, new_rows: int, seed: int, budget: str = "full") -> Iterator[str]:
    """Synthesise, build features, train; yields lines for the CLI to print."""
    from mallscore.specs import get_spec
    from mallscore.synth import synth_customers
    from mallscore.training import get_budget, read_training_set, train_frame
    from mallscore.warehouse import label_counts, open_warehouse, relation_counts

    with open_warehouse(settings) as con:
        known = synth_customers(con, rows, seed)
        fresh = synth_customers(con, new_rows, seed + 1, new=True)
        yield f"[1/3] synthesised {known.rows} scored + {fresh.rows} new customers into {settings.warehouse}"
        counts = relation_counts(con)
        labels = label_counts(con)
        yield (
            f"[2/3] features built: {counts['features_customer']:,} customers, "
            f"{labels['rows']:,} labelled ({labels['positives']:,} high spenders)"
        )
        frame = read_training_set(con, get_spec("default"))
    result = train_frame(frame, settings, "default", budget=get_budget(budget))
    nested = result["nested_cv_roc_auc"]
    yield (
        f"[3/3] trained {result['model_version']}: nested-CV ROC-AUC {nested['mean']:.3f} +- {nested['std']:.3f} "
        f"over {result['n_configs']} configurations, ONNX parity max |dp| {result['onnx']['max_abs_diff']:.1g}, "
        f"{'promoted to champion' if result['promoted'] else 'not promoted: ' + result['promotion_reason']}; "
        f"report {result['report']}"
    )
