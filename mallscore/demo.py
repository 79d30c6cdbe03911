"""The end-to-end demo on synthetic data: what exists of the pipeline, in order."""

from __future__ import annotations

from typing import Iterator

from mallscore.settings import Settings


def run_demo(settings: Settings, *, rows: int, new_rows: int, seed: int) -> Iterator[str]:
    """Synthesise, build features, and report; yields lines for the CLI to print."""
    from mallscore.synth import synth_customers
    from mallscore.warehouse import label_counts, open_warehouse, relation_counts

    with open_warehouse(settings) as con:
        known = synth_customers(con, rows, seed)
        fresh = synth_customers(con, new_rows, seed + 1, new=True)
        yield f"[1/2] synthesised {known.rows} scored + {fresh.rows} new customers into {settings.warehouse}"
        counts = relation_counts(con)
        labels = label_counts(con)
        yield (
            f"[2/2] features built: {counts['features_customer']:,} customers, "
            f"{labels['rows']:,} labelled ({labels['positives']:,} high spenders)"
        )
