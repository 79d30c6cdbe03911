"""The training report: one static HTML page that opens offline, figures embedded as base64 PNG.

No CDN, no script: matplotlib (Agg, through ``Figure`` objects, no pyplot
global state) draws every figure into memory. When a spec was trained with
leaking features, a warning sits above every metric. The "what this means for
marketing" section is written from the numbers in the card.
"""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np
import pandas as pd

from mallscore.specs import ModelSpec
from mallscore.training.report_parts import fmt, pct, reference_section, table

FIGURES = (
    ("fig-distributions", "Distributions of age, income and spending score"),
    ("fig-pairs", "Pairwise relations, coloured by label"),
    ("fig-confusion", "Confusion matrix (holdout)"),
    ("fig-roc", "ROC curve"),
    ("fig-pr", "Precision-recall curve"),
    ("fig-cv-spread", "Cross-validation spread per metric"),
    ("fig-odds", "Odds ratios with 95% intervals"),
    ("fig-calibration", "Calibration curve"),
    ("fig-lift", "Lift by tier"),
    ("fig-leakage", "Leakage panel: single-feature ROC-AUC"),
)
WORDING = {
    # feature: (who has more of it, who has less), for the marketing text
    "age": ("older customers", "younger customers"),
    "annual_income": ("higher-income customers", "lower-income customers"),
    "gender_female": ("women", "men"),
    "spending_score": ("customers with higher spending scores", "customers with lower spending scores"),
}
UNITS = {"age": " years", "annual_income": " k$", "spending_score": " points"}
POS_COLOUR = "#c0392b"
NEG_COLOUR = "#2e86c1"
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figcaption{font-size:.9em;color:#555}img{max-width:100%}
.leak-warning{background:#fdecea;border:2px solid #c0392b;color:#7b241c;padding:.6em 1em;margin:.8em 0;
font-weight:600}.ok{background:#eafaf1;border:1px solid #27ae60;padding:.6em 1em}
.muted{color:#666;font-size:.9em}
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(fig_id: str, caption: str, fig) -> str:
    return (
        f'<figure id="{fig_id}"><img alt="{html.escape(caption)}" src="data:image/png;base64,{_png(fig)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _draw(card: dict, frame: pd.DataFrame, spec: ModelSpec, curves: dict) -> dict[str, str]:
    from matplotlib.figure import Figure
    from sklearn.metrics import precision_recall_curve, roc_curve

    label = spec.label
    pos = frame[label] == 1
    figs: dict[str, str] = {}
    titles = dict(FIGURES)

    cols = [c for c in ("age", "annual_income", "spending_score") if c in frame.columns]
    fig = Figure(figsize=(4 * len(cols), 3.2))
    for i, c in enumerate(cols):
        ax = fig.add_subplot(1, len(cols), i + 1)
        ax.hist(frame[c].dropna(), bins=25, color="#7f8c8d")
        ax.set_title(c)
    figs["fig-distributions"] = _figure("fig-distributions", titles["fig-distributions"], fig)

    pairs = [(a, b) for i, a in enumerate(cols) for b in cols[i + 1 :]]
    fig = Figure(figsize=(4 * max(len(pairs), 1), 3.6))
    for i, (a, b) in enumerate(pairs):
        ax = fig.add_subplot(1, len(pairs), i + 1)
        ax.scatter(frame.loc[~pos, a], frame.loc[~pos, b], s=10, c=NEG_COLOUR, label="not high spender", alpha=0.7)
        ax.scatter(frame.loc[pos, a], frame.loc[pos, b], s=10, c=POS_COLOUR, label="high spender", alpha=0.7)
        ax.set_xlabel(a)
        ax.set_ylabel(b)
    if pairs:
        fig.axes[0].legend(fontsize=8)
    figs["fig-pairs"] = _figure("fig-pairs", titles["fig-pairs"], fig)

    cm = np.array(card["metrics"]["test"]["confusion_matrix"])
    fig = Figure(figsize=(3.6, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(cm, cmap="Blues")
    for (r, c), v in np.ndenumerate(cm):
        ax.text(c, r, str(v), ha="center", va="center", fontsize=14, color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks([0, 1], ["predicted other", "predicted high"])
    ax.set_yticks([0, 1], ["actual other", "actual high"])
    figs["fig-confusion"] = _figure("fig-confusion", titles["fig-confusion"], fig)

    y_test, p_test = np.array(curves["y_test"]), np.array(curves["p_test"])
    y_oof, p_oof = np.array(curves["y_oof"]), np.array(curves["p_oof"])
    fig = Figure(figsize=(4.2, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    for yy, pp, name in ((y_test, p_test, "holdout"), (y_oof, p_oof, "out-of-fold (training split)")):
        fpr, tpr, _ = roc_curve(yy, pp)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="random")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=8)
    figs["fig-roc"] = _figure("fig-roc", titles["fig-roc"], fig)

    fig = Figure(figsize=(4.2, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    for yy, pp, name in ((y_test, p_test, "holdout"), (y_oof, p_oof, "out-of-fold (training split)")):
        prec, rec, _ = precision_recall_curve(yy, pp)
        ax.plot(rec, prec, label=name)
    ax.axhline(float(np.mean(y_oof)), ls="--", color="grey", label="base rate")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.legend(fontsize=8)
    figs["fig-pr"] = _figure("fig-pr", titles["fig-pr"], fig)

    folds = curves["cv_folds"]
    fig = Figure(figsize=(6.5, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    names = list(folds)
    ax.boxplot([folds[m] for m in names])
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score per fold")
    figs["fig-cv-spread"] = _figure("fig-cv-spread", titles["fig-cv-spread"], fig)

    odds = card["odds_ratios"]
    fig = Figure(figsize=(5.5, 0.6 + 0.6 * len(odds)))
    ax = fig.add_subplot(1, 1, 1)
    for i, o in enumerate(odds.values()):
        val, lo, hi = (o["odds_ratio"] or np.nan), (o["ci_low"] or np.nan), (o["ci_high"] or np.nan)
        ax.errorbar([val], [i], xerr=[[max(val - lo, 0)], [max(hi - val, 0)]], fmt="o", capsize=4)
    ax.axvline(1.0, ls="--", color="grey")
    ax.set_xscale("log")
    ax.set_yticks(range(len(odds)), list(odds))
    ax.set_xlabel("odds ratio per standard deviation (log scale)")
    figs["fig-odds"] = _figure("fig-odds", titles["fig-odds"], fig)

    cal = card["metrics"]["calibration_oof"]
    fig = Figure(figsize=(4.2, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(cal["predicted"], cal["observed"], "o-", label="model (out-of-fold)")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed high-spender rate")
    ax.legend(fontsize=8)
    figs["fig-calibration"] = _figure("fig-calibration", titles["fig-calibration"], fig)

    tiers = card["tiers"]
    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    base = card["training_data"]["positives"] / card["training_data"]["rows"]
    lifts = [t["lift"] or 0.0 for t in tiers]
    err_lo = [max((t["lift"] or 0) - (t["rate_ci_low"] or 0) / base, 0) for t in tiers]
    err_hi = [max((t["rate_ci_high"] or 0) / base - (t["lift"] or 0), 0) for t in tiers]
    ax.bar([t["name"] for t in tiers], lifts, yerr=[err_lo, err_hi], capsize=4, color="#16a085")
    ax.axhline(1.0, ls="--", color="grey")
    ax.set_ylabel("lift over base rate (95% interval)")
    figs["fig-lift"] = _figure("fig-lift", titles["fig-lift"], fig)

    per = card["leakage"]["per_feature"]
    fig = Figure(figsize=(5.5, 0.8 + 0.5 * len(per)))
    ax = fig.add_subplot(1, 1, 1)
    names = list(per)
    flagged = set(card["leakage"]["flagged"])
    ax.barh(names, [per[n]["auc"] for n in names], color=[POS_COLOUR if n in flagged else "#7f8c8d" for n in names])
    ax.axvline(card["leakage"]["auc_limit"], ls="--", color=POS_COLOUR)
    ax.set_xlim(0.5, 1.0)
    ax.set_xlabel("single-feature ROC-AUC (symmetric); dashed: leakage limit")
    figs["fig-leakage"] = _figure("fig-leakage", titles["fig-leakage"], fig)
    return figs


def marketing_text(card: dict) -> list[str]:
    """Plain-language paragraphs for marketing, written from the card's numbers."""
    out = []
    flagged = card["leakage"]["flagged"]
    if flagged:
        out.append(
            f"These numbers mean nothing for new customers. The label is defined as "
            f"{card['label']['definition']}, and the model is given {', '.join(flagged)}: it reads the answer "
            "back instead of predicting it. A new customer has no spending score yet, so this model cannot "
            "segment them; the perfect-looking accuracy is the leak, not skill. Use the default spec "
            "(age, income, gender) for targeting."
        )
    odds = card["odds_ratios"]
    kinds = {f["name"]: f for f in card["features"]}
    ranked = sorted(odds.items(), key=lambda kv: -abs(math.log(kv[1]["odds_ratio"] or 1.0)))
    for name, o in ranked:
        orr, lo, hi = o["odds_ratio"], o["ci_low"], o["ci_high"]
        if orr is None or lo is None or hi is None:
            continue
        more, less = WORDING.get(
            name, (f"customers with more {name.replace('_', ' ')}", f"customers with less {name.replace('_', ' ')}")
        )
        if kinds.get(name, {}).get("values") is not None and o["sd"] > 0:
            # a yes/no feature: per standard deviation means little; convert to "yes vs no"
            orr, lo, hi = (v ** (1.0 / o["sd"]) for v in (orr, lo, hi))
            per = f"{more.capitalize()} compared with {less}: odds of being a high spender multiplied by"
        else:
            unit = UNITS.get(name, "")
            per = (
                f"One standard deviation more {name.replace('_', ' ')} ({o['sd']:.3g}{unit}) multiplies the "
                "odds of being a high spender by"
            )
        if name in flagged:
            out.append(
                f"{per} {orr:.3g}: meaningless, because {name} defines the label; the true value is "
                "infinite and the printed one depends only on the regularisation strength."
            )
        elif lo > 1 or hi < 1:
            direction = more if orr > 1 else less
            out.append(
                f"{per} {orr:.2f} (95% interval {lo:.2f} to {hi:.2f}): {direction} are more likely to be high spenders."
            )
        else:
            out.append(
                f"{per} {orr:.2f}, but the 95% interval ({lo:.2f} to {hi:.2f}) includes 1: no clear "
                f"effect of {name.replace('_', ' ')}."
            )
    top = card["tiers"][0]
    base = card["training_data"]["positives"] / card["training_data"]["rows"]
    if top["observed_rate"] is not None:
        out.append(
            f"The {top['name']} tier ({pct(top['share'])} of customers, out-of-fold) held high spenders "
            f"{pct(top['observed_rate'])} of the time (95% interval {pct(top['rate_ci_low'])} to "
            f"{pct(top['rate_ci_high'])}) against a base rate of {pct(base)}: a lift of {top['lift']:.2f}x over "
            "picking customers at random."
        )
    lifts = ", ".join(f"{t['name'].replace('_', ' ')} {t['lift']:.2f}x" for t in card["tiers"] if t["lift"] is not None)
    out.append(f"Lift of every tier over the base rate: {lifts}.")
    observed = [t["observed_rate"] for t in card["tiers"] if t["observed_rate"] is not None]
    if observed != sorted(observed, reverse=True):
        out.append(
            "The tiers are not in order of observed high-spender rate: the model's ranking among its "
            "top customers is not reliable on this much data; treat neighbouring tiers as one."
        )
    nested = card["metrics"]["nested_cv_roc_auc"]
    out.append(
        f"How sure is this? Re-running the whole tuning inside {nested['outer_folds']} folds gives a ROC-AUC of "
        f"{nested['mean']:.2f} +- {nested['std']:.2f} (0.5 is a coin flip, 1.0 perfect ranking). The holdout has only "
        f"{card['metrics']['holdout']['rows']} customers, so its single numbers move a lot from one split to "
        "another; trust the spreads more than any one figure."
    )
    return out


def _warning(card: dict) -> str:
    flagged = card["leakage"]["flagged"]
    if not flagged:
        return ""
    return (
        f'<div class="leak-warning">Warning: trained with leaking feature(s) {html.escape(", ".join(flagged))}'
        " (--allow-leakage). The figures below are not valid for new customers.</div>"
    )


def render_report(card: dict, frame: pd.DataFrame, spec: ModelSpec, curves: dict) -> str:
    """The whole report as an HTML string (self-contained)."""
    figs = _draw(card, frame, spec, curves)
    warn = _warning(card)
    metrics = card["metrics"]
    test = metrics["test"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>mallscore model {html.escape(card['version'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Model {html.escape(card['version'])}</h1>",
        f"<p>Spec <b>{html.escape(card['spec'])}</b>: {html.escape(card.get('description', ''))} "
        f"Features: {html.escape(', '.join(f['name'] for f in card['features']))}. "
        f"Label: {html.escape(card['label']['name'])} = {html.escape(card['label']['definition'])}. "
        f"Trained {html.escape(card['created_at'])} on {card['training_data']['rows']} customers "
        f"({card['training_data']['positives']} high spenders).</p>",
    ]

    parts.append('<h2 id="leakage">Leakage check</h2>')
    if card["leakage"]["flagged"]:
        parts.append(warn)
    else:
        parts.append('<div class="ok">No feature separates the label on its own.</div>')
    parts.append(
        table(
            ["feature", "single-feature ROC-AUC", "perfect split", "flagged"],
            [
                [
                    html.escape(n),
                    fmt(v["auc"]),
                    "yes" if v["perfect_split"] else "no",
                    "YES" if n in card["leakage"]["flagged"] else "no",
                ]
                for n, v in card["leakage"]["per_feature"].items()
            ],
        )
    )
    parts.append(figs["fig-leakage"])

    parts.append('<h2 id="marketing">What this means for marketing</h2>')
    parts.append(warn)
    parts.extend(f"<p>{html.escape(p)}</p>" for p in marketing_text(card))

    parts.append('<h2 id="data">The data</h2>')
    parts.append(figs["fig-distributions"])
    parts.append(figs["fig-pairs"])

    parts.append('<h2 id="holdout">Holdout (stratified 20%)</h2>')
    parts.append(warn)
    parts.append(
        table(
            ["metric", "value"],
            [[m, fmt(test[m])] for m in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")],
        )
    )
    parts.append(
        f"<p class='muted'>{metrics['holdout']['rows']} customers; threshold {fmt(card['threshold'], 4)} "
        f"({html.escape(card['threshold_rule'])}).</p>"
    )
    parts.append(figs["fig-confusion"])
    parts.append(figs["fig-roc"])
    parts.append(figs["fig-pr"])

    parts.append('<h2 id="cv">Cross-validation with spread</h2>')
    parts.append(warn)
    parts.append(
        table(["metric", "mean", "std"], [[m, fmt(v["mean"]), fmt(v["std"])] for m, v in metrics["cv"].items()])
    )
    nested = metrics["nested_cv_roc_auc"]
    parts.append(
        f"<p>{html.escape(metrics['cv_scheme'])}. Nested CV ROC-AUC (tuning re-run inside each of "
        f"{nested['outer_folds']} outer folds): <b>{fmt(nested['mean'])} +- {fmt(nested['std'])}</b>.</p>"
    )
    parts.append(figs["fig-cv-spread"])

    parts.append('<h2 id="odds">Odds ratios</h2>')
    parts.append(warn)
    parts.append(
        table(
            ["feature", "odds ratio", "95% low", "95% high", "per (1 sd)"],
            [
                [html.escape(n), fmt(o["odds_ratio"]), fmt(o["ci_low"]), fmt(o["ci_high"]), fmt(o["sd"])]
                for n, o in card["odds_ratios"].items()
            ],
        )
    )
    parts.append(f"<p class='muted'>{html.escape(card['odds_ratio_model'])}.</p>")
    parts.append(figs["fig-odds"])

    parts.append('<h2 id="calibration">Calibration</h2>')
    parts.append(warn)
    parts.append(figs["fig-calibration"])

    parts.append('<h2 id="tiers">Tiers and lift</h2>')
    parts.append(warn)
    parts.append(
        table(
            ["tier", "min p", "min score", "observed rate", "95% interval", "lift", "share"],
            [
                [
                    t["name"],
                    fmt(t["min_p"], 4),
                    fmt(t["min_score"], 0),
                    pct(t["observed_rate"]),
                    f"{pct(t['rate_ci_low'])} to {pct(t['rate_ci_high'])}",
                    fmt(t["lift"], 2),
                    pct(t["share"]),
                ]
                for t in card["tiers"]
            ],
        )
    )
    parts.append(f"<p class='muted'>{html.escape(card['tier_rule'])}.</p>")
    parts.append(figs["fig-lift"])

    parts.append(reference_section(card))

    onnx = card["onnx"]
    parts.append('<h2 id="model">Model and export</h2>')
    parts.append(
        table(
            ["item", "value"],
            [
                ["configurations searched", str(card["n_configs"])],
                ["selection rule", html.escape(card["tuning"]["rule"])],
                ["configurations within one SE", str(card["tuning"]["n_within_one_se"])],
                ["best parameters", html.escape(", ".join(f"{k}={v}" for k, v in card["best_params"].items()))],
                ["ONNX sha256", onnx["sha256"]],
                ["parity: max |p difference|", fmt(onnx["max_abs_diff"])],
                ["parity: label flips", str(onnx["label_flips"])],
                ["parity: rows checked", str(onnx["rows_checked"])],
                ["training data fingerprint", card["training_data"]["fingerprint"]],
                ["promotable", "yes" if card["promotable"] else "no (leakage)"],
                ["budget", html.escape(card["budget"]["name"])],
                ["git commit", html.escape(str(card.get("git_commit")))],
            ],
        )
    )
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)
