"""Small HTML pieces of the training report, and its reference-distributions section (drift monitoring)."""

from __future__ import annotations

import html
import math


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, float):
        if abs(x) >= 1e4 or (x != 0 and abs(x) < 1e-3):
            return f"{x:.3g}"
        return f"{x:.{digits}f}"
    return html.escape(str(x))


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def reference_section(card: dict) -> str:
    """The training population's reference distributions, against which every run's drift is measured."""
    reference = card.get("reference")
    if not reference:
        return ""
    parts = [
        '<h2 id="reference">Reference distributions (for drift monitoring)</h2>',
        f"<p>The {reference['rows']} training customers, binned as each nightly run's scored customers are "
        "binned for <code>scoring_drift</code> (<code>mallscore drift</code>): "
        f"{html.escape(reference['bins'])}. The average customer (the training means) is the baseline of "
        "<code>segments.top_reason</code>.</p>",
    ]
    for entry in [*reference["features"], reference["score"]]:
        if "values" in entry:
            words = entry.get("value_words") or [fmt(v, 0) for v in entry["values"]]
            rows = [[html.escape(str(w)), f"{100 * s:.1f}%"] for w, s in zip(words, entry["shares"])]
        else:
            edges = entry["edges"]
            bounds = ["-inf", *[fmt(e, 4) for e in edges], "+inf"]
            rows = [[f"[{lo}, {hi})", f"{100 * s:.1f}%"] for lo, hi, s in zip(bounds, bounds[1:], entry["shares"])]
        mean = f" (mean {fmt(entry['mean'], 3)})" if "mean" in entry else ""
        parts.append(f"<h3>{html.escape(entry['name'])}{mean}</h3>")
        parts.append(table(["bin", "share of training customers"], rows))
    return "\n".join(parts)
