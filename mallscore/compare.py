"""What replacing a model would do to the customers: both models scored on the warehouse, side by side.

Before a challenger replaces the champion, :func:`compare` scores every current
customer of the feature table with both (onnxruntime, streamed in Arrow batches
like the nightly job, each batch scored by both models, nothing written) and
counts:

* ``matrix``: customers by champion segment (rows) and challenger segment
  (columns), by the scoring job's rule (a customer with an observed spending
  score is tiered by it, others by the model's probability);
* ``changed`` / ``changed_share``: customers whose segment differs, and their
  share of all ``customers`` (rejected ones included: neither model scores them);
* ``label_flips``: customers predicted high spender by one model and not the other
  (each at its own threshold);
* ``tiers``: for each model, on the labelled customers (observed score known,
  label by the warehouse's rule), each probability tier's size, observed
  high-spender rate with its Wilson 95% interval, and lift over the base rate
  (the interval is the rate's divided by the base rate).

Rows the card's contract rejects are counted as ``rejected`` and not compared.
Both models must take the same features with the same allowed values (a
different spec is refused: exit 2). Nothing here imports scikit-learn or pandas.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mallscore.errors import UsageError
from mallscore.scoring.model import LoadedModel, predict
from mallscore.scoring.stream import BATCH_ROWS, as_numpy
from mallscore.settings import Settings
from mallscore.stats import wilson

HEADLINE_KEYS = ("champion", "challenger", "customers", "changed", "changed_share", "label_flips", "top_tier")


def load_pair(settings: Settings, version: str, against: str | None = None) -> tuple[LoadedModel, LoadedModel]:
    """(champion, challenger): ``version`` against ``against`` or, by default, its spec's champion."""
    from mallscore import registry
    from mallscore.scoring.model import load_model

    for name in (version, against):
        _refuse_groups(settings, name)
    challenger = load_model(settings, version)
    if against is None:
        against = registry.champion(settings.models_dir, challenger.contract.spec)
        if against is None:
            raise registry.ModelNotFoundError(
                f"spec {challenger.contract.spec!r} has no champion to compare {version} with; pass --against VERSION"
            )
    return load_model(settings, against), challenger


def _refuse_groups(settings: Settings, version: str | None) -> None:
    """A behaviour-groups model has no segments to compare: say so (exit 2) instead of a contract error."""
    from mallscore import registry

    if version is not None and registry.load_card(settings.models_dir, version).get("kind") == "groups":
        raise UsageError(
            f"{version} is a behaviour-groups model: models compare compares high-spender classifiers "
            "(see the groups card with: mallscore models show VERSION)"
        )


def compare(settings: Settings, champion: LoadedModel, challenger: LoadedModel, batch_rows: int = BATCH_ROWS) -> dict:
    """Score the warehouse's customers with both models and count what would change (see module docstring)."""
    from mallscore.warehouse import open_warehouse

    _check_same_inputs(champion, challenger)
    started = time.perf_counter()
    with open_warehouse(settings, read_only=True) as con:
        counts = _stream_counts(con, champion, challenger, batch_rows)
    return _result(champion, challenger, counts, time.perf_counter() - started)


def _check_same_inputs(champion: LoadedModel, challenger: LoadedModel) -> None:
    a, b = champion.contract, challenger.contract
    if a.features != b.features or a.feature_table != b.feature_table or a.inputs != b.inputs:
        raise UsageError(
            f"models {a.version} and {b.version} take different features or allowed values "
            f"({a.feature_names} from {a.feature_table} vs {b.feature_names} from {b.feature_table}); "
            "compare models of the same spec"
        )


def _tier_names(champion: LoadedModel, challenger: LoadedModel) -> list[str]:
    names = [t.name for t in champion.contract.tiers]
    return names + [t.name for t in challenger.contract.tiers if t.name not in names]


def _segments(model: LoadedModel, p: np.ndarray, score: np.ndarray, index: dict[str, int]) -> np.ndarray:
    """Segment index per row by the scoring job's rule (mallscore.contract.segment_sql), in numpy."""
    tiers = model.contract.tiers
    p64 = p.astype(np.float64)
    by_p = np.full(p.size, index[tiers[-1].name], dtype=np.int64)
    by_score = by_p.copy()
    for tier in reversed(tiers):  # the first tier whose bound holds wins: assign best-last
        by_p[p64 >= tier.min_p] = index[tier.name]
        by_score[score >= tier.min_score] = index[tier.name]
    return np.where(np.isnan(score), by_p, by_score)


def _prob_tiers(model: LoadedModel, p: np.ndarray) -> np.ndarray:
    """Tier position (0 = best) by probability only."""
    tiers = model.contract.tiers
    out = np.full(p.size, len(tiers) - 1, dtype=np.int64)
    p64 = p.astype(np.float64)
    for k in range(len(tiers) - 1, -1, -1):
        out[p64 >= tiers[k].min_p] = k
    return out


def _doubles(array: Any) -> np.ndarray:
    """A float64 Arrow array without nulls as a numpy view."""
    return np.frombuffer(array.buffers()[1], dtype=np.float64, count=len(array), offset=array.offset * 8)


def _stream_counts(con: Any, champion: LoadedModel, challenger: LoadedModel, batch_rows: int) -> dict:
    from mallscore.contract import feature_column
    from mallscore.scoring.relations import feature_columns, prepare
    from mallscore.warehouse import label_rule

    contract = challenger.contract
    prepare(
        con, contract, mode="all", model_version=contract.version, columns=feature_columns(con, contract.feature_table)
    )
    names = _tier_names(champion, challenger)
    index = {n: i for i, n in enumerate(names)}
    k = len(names)
    above = float(label_rule()["high_spender_above"])
    inputs = {name: feature_column(i) for i, name in enumerate(contract.inputs)}
    columns = ", ".join(f'"{c}"' for c in inputs.values())
    rejected = int(con.execute("select count(*) from run_candidates where reason is not null").fetchall()[0][0])
    reader = con.sql(
        f"select coalesce(observed_score, 'nan'::double) as score, {columns} from run_candidates where reason is null"
    ).to_arrow_reader(batch_rows)
    matrix = np.zeros(k * k, dtype=np.int64)
    flips = 0
    models = {"champion": champion, "challenger": challenger}
    tier_n = {m: np.zeros(len(v.contract.tiers), dtype=np.int64) for m, v in models.items()}
    tier_hits = {m: np.zeros(len(v.contract.tiers), dtype=np.int64) for m, v in models.items()}
    labelled = positives = 0
    try:
        for batch in reader:
            feeds = {n: as_numpy(batch.column(c)).reshape(-1, 1) for n, c in inputs.items()}
            score = _doubles(batch.column("score"))
            probs = {m: predict(v, feeds) for m, v in models.items()}
            seg_old = _segments(champion, probs["champion"], score, index)
            seg_new = _segments(challenger, probs["challenger"], score, index)
            matrix += np.bincount(seg_old * k + seg_new, minlength=k * k)
            flips += int(
                np.count_nonzero(
                    (probs["champion"] >= champion.contract.threshold)
                    != (probs["challenger"] >= challenger.contract.threshold)
                )
            )
            known = ~np.isnan(score)
            label = score[known] > above
            labelled += int(known.sum())
            positives += int(label.sum())
            for m, v in models.items():
                tier = _prob_tiers(v, probs[m][known])
                size = len(v.contract.tiers)
                tier_n[m] += np.bincount(tier, minlength=size)
                tier_hits[m] += np.bincount(tier, weights=label, minlength=size).astype(np.int64)
    finally:
        reader.close()
    return {
        "names": names,
        "matrix": matrix.reshape(k, k),
        "rejected": rejected,
        "label_flips": flips,
        "labelled": labelled,
        "positives": positives,
        "tier_n": tier_n,
        "tier_hits": tier_hits,
    }


def _over(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def _tier_rows(model: LoadedModel, n: np.ndarray, hits: np.ndarray, base: float | None) -> list[dict]:
    rows = []
    for i, tier in enumerate(model.contract.tiers):
        size, got = int(n[i]), int(hits[i])
        rate = got / size if size else None
        low, high = wilson(got, size)
        rows.append(
            {
                "name": tier.name,
                "min_p": tier.min_p,
                "n": size,
                "high_spenders": got,
                "observed_rate": rate,
                "rate_ci_low": low,
                "rate_ci_high": high,
                "lift": _over(rate, base),
                "lift_ci_low": _over(low, base),
                "lift_ci_high": _over(high, base),
            }
        )
    return rows


def _result(champion: LoadedModel, challenger: LoadedModel, counts: dict, seconds: float) -> dict:
    names, matrix = counts["names"], counts["matrix"]
    scored = int(matrix.sum())
    changed = scored - int(np.trace(matrix))
    base = counts["positives"] / counts["labelled"] if counts["labelled"] else None
    tiers = {
        m: _tier_rows(v, counts["tier_n"][m], counts["tier_hits"][m], base)
        for m, v in (("champion", champion), ("challenger", challenger))
    }
    return {
        "champion": champion.version,
        "challenger": challenger.version,
        "customers": scored + counts["rejected"],
        "scored": scored,
        "rejected": counts["rejected"],
        "changed": changed,
        "changed_share": changed / (scored + counts["rejected"]) if scored else 0.0,
        "label_flips": counts["label_flips"],
        "matrix": {a: {b: int(matrix[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)},
        "matrix_axes": "rows: champion's segment, columns: challenger's segment",
        "labelled": counts["labelled"],
        "base_rate": base,
        "tiers": tiers,
        "top_tier": {m: {"name": rows[0]["name"], "lift": rows[0]["lift"]} for m, rows in tiers.items()},
        "seconds": round(seconds, 3),
    }


def headline(result: dict) -> dict:
    """The comparison's key figures, as the card and promotions.log record them."""
    return {key: result[key] for key in HEADLINE_KEYS}


def headline_text(head: dict) -> str:
    """One line: who against whom, the share of customers changing segment, the top tier's lift for both."""

    def lift(m: str) -> str:
        value = head["top_tier"][m]["lift"]
        return "-" if value is None else f"{value:.2f}"

    top = head["top_tier"]["challenger"]["name"]
    return (
        f"compared with champion {head['champion']}: {head['changed_share']:.1%} of {head['customers']} customers "
        f"would change segment ({head['changed']}), {head['label_flips']} predicted labels flip; "
        f"{top} lift {lift('champion')} (champion) vs {lift('challenger')} (challenger)"
    )


def against_champion(settings: Settings, card: dict, onnx_bytes: bytes) -> dict | None:
    """The card's ``comparison`` block for a model not yet registered: its headline against the spec's champion.

    None when the spec has no champion; ``{"against", "error"}`` when the comparison
    could not run (a locked or unreadable warehouse, a champion that cannot load).
    """
    from mallscore import registry
    from mallscore.errors import MallscoreError
    from mallscore.scoring.model import session_model

    try:
        current = registry.champion(settings.models_dir, card["spec"])
    except MallscoreError:
        current = None
    return None if current is None else _block(settings, current, lambda: session_model(card, onnx_bytes))


def _block(settings: Settings, current: str, challenger: Any) -> dict:
    from mallscore.errors import MallscoreError
    from mallscore.scoring.model import load_model

    try:
        result = compare(settings, load_model(settings, current), challenger())
    except MallscoreError as exc:
        return {"against": current, "error": str(exc)}
    return {"against": current, **headline(result)}


def promotion_veto(settings: Settings, comparison: dict | None) -> str | None:
    """Why MALLSCORE_MAX_SEGMENT_CHANGE stops an automatic promotion (None: it does not)."""
    limit = settings.max_segment_change
    if limit is None or comparison is None:
        return None
    if "error" in comparison:
        return (
            f"MALLSCORE_MAX_SEGMENT_CHANGE is set and the comparison with the champion failed ({comparison['error']})"
        )
    if comparison["changed_share"] <= limit:
        return None
    return (
        f"{comparison['changed_share']:.1%} of customers would change segment, above "
        f"MALLSCORE_MAX_SEGMENT_CHANGE={limit:g}"
    )


def describe(comparison: dict) -> str:
    """The line `train` and `models promote` print about a comparison block."""
    if "error" in comparison:
        return f"comparison with champion {comparison['against']} failed: {comparison['error']}"
    return headline_text(comparison)


def promotion_comparison(settings: Settings, version: str) -> dict | None:
    """The comparison block `models promote VERSION` shows: against the current champion (None if VERSION is it)."""
    from mallscore import registry
    from mallscore.errors import MallscoreError
    from mallscore.scoring.model import load_model

    try:
        card = registry.load_card(settings.models_dir, version)
        if card.get("kind") == "groups":
            return None  # no segments to compare (the groups card shows its own silhouette)
        current = registry.champion(settings.models_dir, card["spec"])
    except MallscoreError:
        return None  # promote itself says what is wrong with the model
    if current is None or current == version:
        return None
    return _block(settings, current, lambda: load_model(settings, version))
