"""The groups report: one static HTML page that opens offline, figures embedded as base64 PNG.

Income x score coloured by group with the centres, the silhouette by k with its spread, group
sizes, and what each group means for campaigns (written from the card's numbers). matplotlib
through ``Figure`` objects (Agg, no pyplot state), like the classifier's report.
"""

from __future__ import annotations

import html

import numpy as np

from mallscore.training.report import _CSS, _figure
from mallscore.training.report_parts import table

FIGURES = (
    ("fig-groups", "Annual income x spending score, coloured by group, with the centres"),
    ("fig-silhouette", "Mean silhouette by k, with one standard deviation over seeds and bootstrap resamples"),
    ("fig-sizes", "Customers per group (training rows)"),
)
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
CAMPAIGN = {
    (
        "high",
        "low",
    ): "high income, low spend: upsell candidates; premium offers and personal invitations may unlock spend",
    ("high", "high"): "high income, high spend: the best customers; keep them with premium and loyalty care",
    ("low", "high"): "low income, high spend: loyal and price-sensitive; reward them with points and discounts",
    ("low", "low"): "low income, low spend: careful spenders; value offers only, low marketing cost",
    ("mid", "mid"): "the middle of the mall: broad seasonal campaigns",
}


def meaning(name: str) -> str:
    """What a group means for campaigns, from the levels in its generated name."""
    parts = [w.split()[0] for w in name.split(" (")[0].split(", ")]
    if len(parts) == 2 and tuple(parts) in CAMPAIGN:
        return CAMPAIGN[tuple(parts)]
    income, spend = (parts + ["mid", "mid"])[:2]
    return f"{income} income, {spend} spend: tailor offers to that mix"


def _draw(card: dict, X: np.ndarray, labels: np.ndarray) -> dict[str, str]:
    from matplotlib.figure import Figure

    figs = {}
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    show = np.random.default_rng(0).permutation(len(X))[:5000]
    for g in card["groups"]:
        colour = COLOURS[g["index"] % len(COLOURS)]
        rows = show[labels[show] == g["index"]]
        ax.scatter(X[rows, 0], X[rows, 1], s=6, alpha=0.5, color=colour, label=g["name"])
        ax.scatter(
            [g["centre"]["annual_income"]],
            [g["centre"]["spending_score"]],
            marker="X",
            s=160,
            color=colour,
            edgecolor="black",
        )
    ax.set_xlabel("annual income (k$)")
    ax.set_ylabel("spending score (1-100)")
    ax.legend(fontsize=7, loc="best")
    figs["fig-groups"] = _figure("fig-groups", FIGURES[0][1], fig)
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    ks = sorted(int(k) for k in card["silhouette"])
    means = [card["silhouette"][str(k)]["mean"] for k in ks]
    stds = [card["silhouette"][str(k)]["std"] for k in ks]
    ax.errorbar(ks, means, yerr=stds, marker="o", capsize=4)
    ax.axvline(card["k"], color="#999", linestyle="--")
    ax.set_xlabel("k")
    ax.set_ylabel("mean silhouette")
    figs["fig-silhouette"] = _figure("fig-silhouette", FIGURES[1][1], fig)
    fig = Figure(figsize=(6, 3))
    ax = fig.add_subplot()
    ax.barh(
        [g["name"] for g in card["groups"]],
        [g["size"] for g in card["groups"]],
        color=[COLOURS[g["index"] % len(COLOURS)] for g in card["groups"]],
    )
    ax.set_xlabel("customers")
    figs["fig-sizes"] = _figure("fig-sizes", FIGURES[2][1], fig)
    return figs


def render_report(card: dict, X: np.ndarray, labels: np.ndarray) -> str:
    """The HTML page for a groups card and its training rows."""
    figs = _draw(card, X, labels)
    e = html.escape
    groups = table(
        ["group", "customers", "share", "mean income (k$)", "mean score", "for campaigns"],
        [
            [
                e(g["name"]),
                str(g["size"]),
                f"{100 * g['share']:.0f}%",
                f"{g['centre']['annual_income']:.1f}",
                f"{g['centre']['spending_score']:.1f}",
                e(meaning(g["name"])),
            ]
            for g in sorted(card["groups"], key=lambda g: -g["size"])
        ],
    )
    sil = table(
        ["k", "mean silhouette", "std", "runs"],
        [
            [str(k), f"{v['mean']:.3f}", f"{v['std']:.3f}", str(v["runs"])]
            for k, v in sorted(card["silhouette"].items(), key=lambda kv: int(kv[0]))
        ],
    )
    data = card.get("training_data", {})
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>mallscore behaviour groups {e(card['version'])}</title><style>{_CSS}</style></head><body>"
        f"<h1>Behaviour groups {e(card['version'])}</h1>"
        f"<p>k-means on annual income x spending score of {data.get('rows', '?')} customers with a known score "
        f"({data.get('excluded_rows', 0)} rows left out as unusable). Customers without a score get no group.</p>"
        f"<h2>Chosen k</h2><p class='ok'>{e(card['choice']['reason'])} (mode {e(card['choice']['mode'])}).</p>"
        f"{figs['fig-groups']}<h2>The groups and what they mean for campaigns</h2>{groups}{figs['fig-sizes']}"
        f"<h2>Silhouette by k</h2>{sil}{figs['fig-silhouette']}"
        f"<p class='muted'>ONNX parity: {card['onnx']['rows_checked']} rows checked, "
        f"{card['onnx']['mismatches']} mismatches, {card['onnx']['ties']} ties. "
        f"Names kept from {e(str(card['names']['kept_from']))}: {e(', '.join(card['names']['kept']) or 'none')}.</p>"
        "</body></html>\n"
    )
