"""Model monitoring: the training population's reference distributions, and each run's drift against them.

At training time :func:`build_reference` records, for every feature, the
training rows' bins (decile edges of a numeric feature, or its categories)
with the share of rows in each, the training mean and the words a marketer
reads in ``segments.top_reason``; and the same bins for the model's
probability. The card keeps it under ``reference`` (:func:`reference_from_card`
checks it; a card without one still scores, and drift then says ``no reference``).

During a run, in the run's transaction, the rows the run scored are counted
per bin where they already pass: batch by batch in the onnxruntime stream
(:class:`BinCounts`, numpy), or with ``--engine sql`` in SQL (one scan of
the valid candidates before they are inserted, one of the run's new segments
for the probability; a second SQL scan of 10 million streamed customers cost
about 0.9 s, 8% of the run, hence the counting in the stream). Then
``sql/scoring/insert_drift.sql`` turns the counts into the population
stability index per feature and for ``p_high_spender``:

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

with both shares floored at :data:`PSI_FLOOR` (an empty bin never divides by
zero), status ``ok`` below ``MALLSCORE_DRIFT_WARN`` (0.1), ``warn`` below
``MALLSCORE_DRIFT_ALERT`` (0.25), else ``alert``; a run that scored fewer than
:data:`MIN_DRIFT_ROWS` rows reports ``too few rows`` and no PSI. Written to
``scoring_drift`` (``run_id, feature, psi, status, rows``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mallscore.errors import ConfigError, InputMissingError

SCORE_FEATURE = "p_high_spender"
DRIFT_BINS = 10  # deciles of the training rows
PSI_FLOOR = 1e-4  # a share below this (an empty bin) counts as this, in both distributions
MIN_DRIFT_ROWS = 500  # fewer scored rows: sampling noise alone reaches "warn" (PSI ~ bins / rows)
STATUSES = ("ok", "warn", "alert", "too few rows", "no reference")
_MAX_WORDS = 200

# Words for top_reason, by feature name: (value above the training mean, below it). A feature not
# listed reads "higher/lower than most customers"; categories read their value's word.
WORDS: dict[str, tuple[str, str]] = {
    "age": ("older than most customers", "younger than most customers"),
    "annual_income": ("earns more than most customers", "earns less than most customers"),
    "spending_score": ("spends more than most customers", "spends less than most customers"),
}
VALUE_WORDS: dict[str, dict[float, str]] = {"gender_female": {1.0: "female", 0.0: "male"}}
AVERAGE_WORDS = "about average"


# --- the reference, at training time -------------------------------------------------------------


def _numeric_bins(values: Any) -> dict:
    import numpy as np

    edges = np.unique(np.quantile(values, [i / DRIFT_BINS for i in range(1, DRIFT_BINS)]))
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return {"edges": [float(e) for e in edges], "shares": [float(c) / len(values) for c in counts]}


def build_reference(features: Sequence[Mapping[str, Any]], X: Any, p: Any) -> dict:
    """The card's ``reference`` block from the training rows ``X`` (columns in ``features`` order) and their ``p``.

    ``features`` are the card's feature entries (``name``, ``values``). Values
    are rounded to float32 first, as scoring sees them.
    """
    import numpy as np

    X32 = np.asarray(X, dtype=np.float32).astype(np.float64)
    if X32.ndim != 2 or X32.shape[0] == 0 or X32.shape[1] != len(features):
        raise ValueError("build_reference needs one column per feature and at least one row")
    out = []
    for i, feature in enumerate(features):
        name, column = str(feature["name"]), X32[:, i]
        entry: dict[str, Any] = {"name": name, "mean": float(column.mean())}
        if feature.get("values") is not None:
            values = [float(v) for v in feature["values"]]
            entry["values"] = values
            entry["shares"] = [float((column == v).mean()) for v in values]
            words = VALUE_WORDS.get(name, {})
            entry["value_words"] = [words.get(v, f"{v:g}") for v in values]
        else:
            entry.update(_numeric_bins(column))
            above, below = WORDS.get(name, ("higher than most customers", "lower than most customers"))
            entry["above"], entry["below"] = above, below
        out.append(entry)
    p64 = np.asarray(p, dtype=np.float32).astype(np.float64)
    return {
        "rows": int(X32.shape[0]),
        "bins": f"deciles of the training rows (edges: a value belongs to the first bin whose upper edge exceeds "
        f"it); categories by value; PSI floor {PSI_FLOOR:g}",
        "features": out,
        "score": {"name": SCORE_FEATURE, **_numeric_bins(p64)},
    }


# --- the reference, parsed from a card -----------------------------------------------------------


@dataclass(frozen=True)
class Bins:
    """One distribution of the reference: numeric ``edges`` or category ``values``, with expected shares."""

    name: str
    shares: tuple[float, ...]
    edges: tuple[float, ...] | None = None
    values: tuple[float, ...] | None = None
    mean: float | None = None
    above: str = ""
    below: str = ""
    value_words: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reference:
    """A card's reference: one :class:`Bins` per feature (card order), and the probability's."""

    features: tuple[Bins, ...]
    score: Bins

    @property
    def all(self) -> tuple[Bins, ...]:
        return (*self.features, self.score)


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _words(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_WORDS:
        raise ConfigError(f"{what} must be a non-empty text of at most {_MAX_WORDS} characters")
    return value


def _bins(raw: Any, where: str, values: tuple[float, ...] | None = None, words: bool = True) -> Bins:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be an object")
    name = str(raw.get("name", ""))
    shares = raw.get("shares")
    if not isinstance(shares, list) or not shares:
        raise ConfigError(f"{where}: 'shares' must be a non-empty list")
    shares_t = tuple(_finite(s, f"{where} share") for s in shares)
    if any(s < 0 for s in shares_t) or abs(sum(shares_t) - 1.0) > 1e-6:
        raise ConfigError(f"{where}: shares must be non-negative and add up to 1")
    mean = _finite(raw["mean"], f"{where} mean") if "mean" in raw else None
    if values is not None:
        listed = raw.get("values")
        if not isinstance(listed, list) or tuple(_finite(v, f"{where} value") for v in listed) != values:
            raise ConfigError(f"{where}: 'values' must be the feature's values, in the card's order")
        if len(shares_t) != len(values):
            raise ConfigError(f"{where}: one share per value")
        value_words = raw.get("value_words") if words else None
        if words and (not isinstance(value_words, list) or len(value_words) != len(values)):
            raise ConfigError(f"{where}: 'value_words' must give one text per value")
        vw = tuple(_words(w, f"{where} value_words") for w in value_words or ())
        return Bins(name, shares_t, values=values, mean=mean, value_words=vw)
    edges = raw.get("edges")
    if not isinstance(edges, list):
        raise ConfigError(f"{where}: 'edges' must be a list")
    edges_t = tuple(_finite(e, f"{where} edge") for e in edges)
    if any(a >= b for a, b in zip(edges_t, edges_t[1:])) or len(shares_t) != len(edges_t) + 1:
        raise ConfigError(f"{where}: edges must increase, with one more share than edges")
    if not words:
        return Bins(name, shares_t, edges=edges_t, mean=mean)
    above, below = _words(raw.get("above"), f"{where} above"), _words(raw.get("below"), f"{where} below")
    return Bins(name, shares_t, edges=edges_t, mean=mean, above=above, below=below)


def reference_from_card(card: Mapping[str, Any], contract: Any) -> Reference | None:
    """The card's reference, checked against its contract (None for a card without one; ConfigError if malformed)."""
    raw = card.get("reference")
    if raw is None:
        return None
    where = f"model card {contract.spec}/{contract.version}: reference"
    if not isinstance(raw, Mapping) or not isinstance(raw.get("features"), list):
        raise ConfigError(f"{where} must be an object with a 'features' list")
    if [str(f.get("name")) if isinstance(f, Mapping) else None for f in raw["features"]] != contract.feature_names:
        raise ConfigError(f"{where}: features must be the card's features, in order")
    features = []
    for feature, entry in zip(contract.features, raw["features"]):
        bins = _bins(entry, f"{where} {feature.name}", feature.values)
        if bins.mean is None:
            raise ConfigError(f"{where} {feature.name}: 'mean' is missing")
        features.append(bins)
    score = _bins(raw.get("score"), f"{where} score", words=False)
    return Reference(tuple(features), score)


# --- drift in SQL, in the run's transaction ------------------------------------------------------


def bin_sql(bins: Bins, column: str, number: Any) -> str:
    """The 0-based bin of ``column`` (``number(key, value)`` renders a constant: the contract's renderers)."""
    if bins.values is not None:
        whens = " ".join(f"when {column} = {number('v', v)} then {i}" for i, v in enumerate(bins.values))
        return f"(case {whens} end)"
    if not bins.edges:
        return "0"
    whens = " ".join(f"when {column} < {number('e', e)} then {i}" for i, e in enumerate(bins.edges))
    return f"(case {whens} else {len(bins.edges)} end)"


def _literals():
    from mallscore.sqlvalues import Literals

    return Literals("double")


def feature_counts_sql(reference: Reference, columns: Sequence[str], source: str = "run_candidates") -> str:
    """One scan of the valid candidates: rows per (feature position, bin), as ``run_drift_counts``."""
    from mallscore.sqlvalues import quote

    values = _literals()
    binned = ", ".join(
        f"{bin_sql(b, quote(c), values.number)} as b_{i}" for i, (b, c) in enumerate(zip(reference.features, columns))
    )
    sets = ", ".join(f"(b_{i})" for i in range(len(columns)))
    position = " ".join(f"when grouping(b_{i}) = 0 then {i}" for i in range(len(columns)))
    bins = ", ".join(f"b_{i}" for i in range(len(columns)))
    return (
        "create or replace temp table run_drift_counts as\n"
        f"select cast(case {position} end as integer) as position, cast(coalesce({bins}) as integer) as bin, "
        "count(*) as n\n"
        f"from (select {binned} from {quote(source)} where reason is null)\n"
        f"group by grouping sets ({sets})"
    )


def score_counts_sql(reference: Reference) -> str:
    """The run's new segments (``$run_id``): rows per bin of ``p_high_spender``, appended to ``run_drift_counts``."""
    position = len(reference.features)
    binned = bin_sql(reference.score, "p_high_spender", _literals().number)
    return (
        f"insert into run_drift_counts select {position}, cast({binned} as integer) as bin, count(*)\n"
        "from segments where run_id = $run_id group by all"
    )


def reference_rows(reference: Reference) -> dict[str, list]:
    """The expected shares as bound lists for ``run_drift_reference`` (position, feature, bin, expected)."""
    rows: dict[str, list] = {"positions": [], "features": [], "bins": [], "expected": []}
    for position, bins in enumerate(reference.all):
        for b, share in enumerate(bins.shares):
            rows["positions"].append(position)
            rows["features"].append(SCORE_FEATURE if bins is reference.score else bins.name)
            rows["bins"].append(b)
            rows["expected"].append(share)
    return rows


class BinCounts:
    """The rows per bin of each feature and of the probability, counted batch by batch as the onnxruntime stream
    passes (the same rule as :func:`bin_sql`: a value's bin is the number of edges at or below it; a category's,
    its position in the card's values), so the streamed run needs no second scan of its customers.
    """

    def __init__(self, reference: Reference) -> None:
        import numpy as np

        self.reference = reference
        self.counts = [np.zeros(len(b.shares), dtype=np.int64) for b in reference.all]
        # The values are float32. For a float32 v and a double e, v >= e exactly when v >= the smallest
        # float32 at or above e, and v == e exactly when e is a float32 and v equals it: so each batch is
        # compared in float32, without widening it, and gives the SQL's counts (which compare in double).
        self.edges = [[_float32_at_or_above(e) for e in b.edges or ()] for b in reference.all]
        self.values = [
            None if b.values is None else [np.float32(v) if float(np.float32(v)) == v else None for v in b.values]
            for b in reference.all
        ]

    def add(self, features: Sequence[Any], p: Any) -> None:
        """Count one batch: ``features`` one float32 array per card feature, ``p`` the probabilities."""
        import numpy as np

        for counts, edges, cats, values in zip(self.counts, self.edges, self.values, [*features, p]):
            values = np.asarray(values, dtype=np.float32).reshape(-1)
            if cats is not None:
                for i, v in enumerate(cats):
                    counts[i] += 0 if v is None else int(np.count_nonzero(values == v))
                continue
            # rows in bin j or above = rows at or above edge j-1; each bin is the difference of two such counts
            at_least = [values.size, *(int(np.count_nonzero(values >= e)) for e in edges), 0]
            counts += np.diff(np.asarray(at_least[::-1]))[::-1]

    def rows(self) -> dict[str, list]:
        """``run_drift_counts`` as bound lists."""
        out: dict[str, list] = {"positions": [], "bins": [], "n": []}
        for position, counts in enumerate(self.counts):
            for b, n in enumerate(counts):
                out["positions"].append(position)
                out["bins"].append(b)
                out["n"].append(int(n))
        return out


def _float32_at_or_above(edge: float) -> Any:
    """The smallest float32 that is >= ``edge`` (a double)."""
    import numpy as np

    with np.errstate(over="ignore"):
        f = np.float32(edge)  # beyond float32's range: +-inf, and -inf steps up to the lowest float32
    if float(f) < edge:
        f = np.nextafter(f, np.float32(np.inf))
    return f


def write_drift(
    con: Any,
    reference: Reference | None,
    contract: Any,
    params: Mapping[str, Any],
    warn: float,
    alert: float,
    counts: BinCounts | None = None,
) -> None:
    """Write the run's ``scoring_drift`` rows (inside the run's transaction), PSI and status computed in SQL.

    ``counts``: the streamed run's bins (:class:`BinCounts`). Without them the
    features were counted in SQL before the insert (:func:`count_features`)
    and the probability is counted here from the run's new segments.
    """
    from mallscore.scoring.relations import run_statement

    if reference is None:
        run_statement(
            con,
            "insert_drift_unreferenced",
            {**params, "features": [*contract.feature_names, SCORE_FEATURE]},
        )
        return
    if counts is not None:
        con.execute(
            "create or replace temp table run_drift_counts as select unnest($positions) as position, "
            "unnest($bins) as bin, unnest($n) as n",
            counts.rows(),
        )
    else:
        con.execute(score_counts_sql(reference), {"run_id": params["run_id"]})
    con.execute(
        "create or replace temp table run_drift_reference as select unnest($positions) as position, "
        "unnest($features) as feature, unnest($bins) as bin, unnest($expected) as expected",
        reference_rows(reference),
    )
    run_statement(
        con,
        "insert_drift",
        {**params, "floor": PSI_FLOOR, "min_rows": MIN_DRIFT_ROWS, "warn": warn, "alert": alert},
    )


def count_features(con: Any, reference: Reference | None, columns: Sequence[str]) -> None:
    """Count the valid candidates per feature bin into ``run_drift_counts`` (before the run inserts them)."""
    if reference is not None:
        con.execute(feature_counts_sql(reference, columns))


# --- reading ------------------------------------------------------------------------------------

DRIFT_COLUMNS = ("feature", "psi", "status", "rows")


def run_drift(con: Any, run_id: str) -> list[dict]:
    """The ``scoring_drift`` rows of one run: features by name, the probability last."""
    rows = con.execute(
        "select feature, psi, status, rows from scoring_drift where run_id = ? order by feature = ?, feature",
        [run_id, SCORE_FEATURE],
    ).fetchall()
    return [dict(zip(DRIFT_COLUMNS, r)) for r in rows]


def flagged(drift: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows in ``warn`` or ``alert``, alerts first."""
    return sorted((d for d in drift if d["status"] in ("warn", "alert")), key=lambda d: d["status"] != "alert")


def describe(drift: Sequence[Mapping[str, Any]]) -> str:
    """``age alert (psi 0.83), gender_female warn (psi 0.12)``; empty when nothing is flagged."""
    return ", ".join(f"{d['feature']} {d['status']} (psi {d['psi']:.3f})" for d in flagged(drift))


def read_drift(settings: Any, run_id: str | None = None) -> dict:
    """``{"run_id", "features": [...]}`` of ``run_id``, or of the latest run that scored rows (read-only)."""
    from mallscore.scoring.relations import feature_columns
    from mallscore.warehouse import connect

    con = connect(settings.warehouse, read_only=True, lock_timeout=settings.lock_timeout)
    try:
        if not feature_columns(con, "scoring_drift"):
            raise InputMissingError("no drift measured yet: run `mallscore score` first")
        if run_id is None:
            rows = con.execute(
                "select run_id from scoring_runs where status = 'succeeded' and rows_scored > 0 "
                "and run_id in (select run_id from scoring_drift) order by started_at desc, run_id desc limit 1"
            ).fetchall()
            if not rows:
                raise InputMissingError("no run has scored rows with drift measured yet: run `mallscore score` first")
            run_id = rows[0][0]
        features = run_drift(con, run_id)
        if not features:
            known = con.execute("select count(*) from scoring_runs where run_id = ?", [run_id]).fetchall()[0][0]
            what = "has no drift rows (it failed, or ran before drift was measured)" if known else "is not a run"
            raise InputMissingError(f"run {run_id} {what}")
    finally:
        con.close()
    return {"run_id": run_id, "features": features}
