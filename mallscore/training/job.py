"""The training job: read the training set, guard, tune, evaluate, export, register, promote.

Order matters and is the point of this module:

1. read ``training_set`` (features come from SQL, never recomputed here);
2. the leakage guard runs before any tuning (exit 65 unless leakage is allowed);
3. a stratified 80/20 split; the grid search, threshold and tiers use only the
   80%; the 20% holdout is scored once;
4. nested CV (run in the same worker pool as the tuning search), repeated CV
   and bootstrap odds ratios on all labelled rows;
5. the final model is the chosen configuration refitted on all labelled rows;
6. ONNX export must pass the parity gate (exit 78) before anything is written;
7. the version folder is written atomically, then the promotion rule runs.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from mallscore import registry
from mallscore.errors import BadInputError, InputMissingError
from mallscore.settings import Settings
from mallscore.specs import ModelSpec, card_header, get_spec
from mallscore.training.budget import FULL, Budget
from mallscore.warehouse import label_rule as warehouse_label_rule

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called as work advances (stage names are human-readable)."""

STAGES = ("search", "repeated CV", "bootstrap", "export", "report")
MIN_PER_CLASS = 10


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


MAX_TRAINING_ROWS = 20_000


def read_training_set(con, spec: ModelSpec, max_rows: int = MAX_TRAINING_ROWS) -> pd.DataFrame:
    """The spec's training rows from the warehouse (customer_id, every training_set column), by customer_id.

    A warehouse with more labelled customers than ``max_rows`` is sampled: a
    deterministic pseudo-random subset (by a hash of customer_id), so the
    200+-configuration search with nested CV stays minutes, not hours, and the
    same data gives the same sample. ``frame.attrs["population_rows"]`` keeps the
    full count for the card.
    """
    table = spec.training_table
    rows = con.execute(
        "select column_name from information_schema.columns where table_name = ? order by ordinal_position",
        [table],
    ).fetchall()
    columns = [r[0] for r in rows]
    if not columns:
        raise InputMissingError(
            f"relation {table!r} does not exist in the warehouse; load customers and run `mallscore features` first"
        )
    needed = ["customer_id", *spec.feature_names, spec.label]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise BadInputError(f"{table} lacks column(s) {missing} needed by spec {spec.name!r}")
    quoted = ", ".join(f'"{c}"' for c in columns)
    population = con.execute(f'select count(*) from "{table}"').fetchall()[0][0]
    if population > max_rows:
        frame = con.execute(
            f'select * from (select {quoted} from "{table}" order by hash(customer_id), customer_id limit ?) '
            "order by customer_id",
            [max_rows],
        ).df()
    else:
        frame = con.execute(f'select {quoted} from "{table}" order by customer_id').df()
    frame.attrs["population_rows"] = int(population)
    return frame


# The ONNX graph is float32, and its parity check probes half the observed span beyond the largest
# value: a usable value stays within a quarter of float32's range (about 8.5e37).
USABLE_MAX = float(np.finfo(np.float32).max) / 4


def exclude_unusable(frame: pd.DataFrame, spec: ModelSpec) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop rows the model cannot use; returns the rest and the rows dropped per feature.

    A value that is infinite, beyond :data:`USABLE_MAX` (the ONNX graph is
    float32: an income of 1e308 would become infinity there and overflow the
    scaler here) or outside
    the spec's ``min``/``max`` is one scoring rejects; training on it would crash
    or bend the model for everyone else. Missing values are left for
    :func:`validate_frame` to refuse. A row is counted under its first bad feature.
    """
    keep = np.ones(len(frame), dtype=bool)
    excluded: dict[str, int] = {}
    for feature in spec.features:
        values = frame[feature.name].to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            bad = np.isinf(values) | (np.abs(values) > USABLE_MAX)
            if feature.min is not None:
                bad |= values < feature.min
            if feature.max is not None:
                bad |= values > feature.max
        bad &= keep
        if bad.any():
            excluded[feature.name] = int(bad.sum())
            keep &= ~bad
    if not excluded:
        return frame, excluded
    kept = frame.loc[keep].reset_index(drop=True)
    kept.attrs.update(frame.attrs)
    return kept, excluded


def validate_frame(frame: pd.DataFrame, spec: ModelSpec) -> None:
    """Refuse data a model cannot honestly be trained on (empty, one class, missing values)."""
    if frame.empty:
        raise InputMissingError(
            f"{spec.training_table} has no rows with a known spending score; ingest customers first"
        )
    for name in spec.feature_names:
        n_missing = int(frame[name].isna().sum())
        if n_missing:
            raise BadInputError(
                f"{spec.training_table}.{name} has {n_missing} missing value(s); fix the data and retry"
            )
    labels = frame[spec.label]
    if labels.isna().any() or not set(labels.unique()) <= {0, 1}:
        raise BadInputError(f"{spec.training_table}.{spec.label} must be 0 or 1 on every row")
    positives = int(labels.sum())
    negatives = int(len(labels) - positives)
    if min(positives, negatives) < MIN_PER_CLASS:
        raise BadInputError(
            f"training needs at least {MIN_PER_CLASS} high spenders and {MIN_PER_CLASS} others; "
            f"{spec.training_table} has {positives} and {negatives}"
        )


def fingerprint(frame: pd.DataFrame, spec: ModelSpec) -> str:
    """sha256 of the training rows the model saw (customer_id, features, label; sorted by customer_id)."""
    cols = ["customer_id", *spec.feature_names, spec.label]
    data = frame.sort_values("customer_id")[cols].to_numpy(dtype="<f8")
    digest = hashlib.sha256(",".join(cols).encode())
    digest.update(np.ascontiguousarray(data).tobytes())
    return digest.hexdigest()


def library_versions() -> dict:
    """Versions of every library that shaped the model."""
    import duckdb
    import onnx
    import onnxruntime
    import skl2onnx
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "skl2onnx": skl2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "duckdb": duckdb.__version__,
    }


def git_commit() -> str | None:
    """The git commit of the code that trained the model, when it runs from a checkout (None from a wheel).

    Only a repository whose top level holds this very package counts: an installed
    wheel inside some other repository (a venv in a project folder) has no commit of ours.
    """
    package = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=package,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.splitlines()
    if len(lines) != 2 or Path(lines[0]).resolve() / package.name != package:
        return None
    return lines[1].strip() or None


def reference_distributions(spec: ModelSpec, X: np.ndarray, exported) -> dict:
    """The card's ``reference``: the training rows' bins per feature and for the exported model's probability."""
    from mallscore.monitoring import build_reference
    from mallscore.training.export import onnx_probabilities

    p = onnx_probabilities(exported.onnx_bytes, spec.feature_names, np.asarray(X, dtype=np.float32))
    return build_reference([f.card_entry() for f in spec.features], X, p)


def _mean_std(block: dict) -> dict:
    return {m: {"mean": v["mean"], "std": v["std"]} for m, v in block.items()}


def train_frame(
    frame: pd.DataFrame,
    settings: Settings,
    spec_name: str = "default",
    allow_leakage: bool = False,
    promote: bool = True,
    progress: Progress | None = None,
    budget: Budget = FULL,
    announce: Callable[[str], None] | None = None,
) -> dict:
    """Train, evaluate, export and register a model of ``spec_name`` on rows read by :func:`read_training_set`.

    Reading first lets the caller release the warehouse before the long work.
    ``announce(line)`` receives the comparison with the champion before promotion.
    """
    from sklearn.model_selection import train_test_split

    from mallscore import compare
    from mallscore.training import evaluation, export, report, tuning
    from mallscore.training.leakage import check_leakage, guard

    progress = progress or _no_progress
    spec = get_spec(spec_name)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 3)
        return now

    frame, excluded = exclude_unusable(frame, spec)
    if excluded:
        log.warning("training without %d row(s) the model cannot use: %s", sum(excluded.values()), excluded)
    validate_frame(frame, spec)
    features = spec.feature_names
    leakage = check_leakage(frame, features, spec.label)
    guard(leakage, spec.name, allow_leakage)
    if leakage.flagged:
        log.warning("training spec %s with leaking features %s (allowed)", spec.name, leakage.flagged)

    X = frame[features].to_numpy(dtype=np.float64)
    y = frame[spec.label].to_numpy(dtype=np.int64)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=budget.seed)

    t = time.perf_counter()
    n_configs = tuning.count_configs(spec, budget)
    n_searches = 1 + budget.nested_outer
    progress("search", 0, n_searches)
    done = [0]

    def search_done() -> None:
        done[0] += 1
        progress("search", done[0], n_searches)

    tuned, nested = tuning.tune_and_nested_cv(X_train, y_train, X, y, spec, budget, on_done=search_done)
    t = lap("searches", t)
    timings["tuning_search_cpu"] = nested["search_seconds"]["tuning"]
    timings["nested_cv_searches_cpu"] = nested["search_seconds"]["nested"]

    def make_pipe():
        return tuning.make_pipeline(spec, budget, tuned.best_params)

    oof = evaluation.oof_probabilities(make_pipe, X_train, y_train, budget)
    threshold = evaluation.choose_threshold(y_train, oof)
    label_rule = warehouse_label_rule()
    tiers = evaluation.make_tiers(y_train, oof, label_rule["high_spender_above"])
    calibration = evaluation.calibration_points(y_train, oof)
    p_test = tuned.search.best_estimator_.predict_proba(X_test)[:, 1]
    test = evaluation.classification_metrics(y_test, p_test, threshold)
    t = lap("holdout", t)

    progress("repeated CV", 0, 1)
    cv = evaluation.repeated_cv(make_pipe, X, y, threshold, budget)
    progress("repeated CV", 1, 1)
    t = lap("repeated_cv", t)

    boot_done = [0]

    def boot_step(n: int) -> None:
        boot_done[0] += n
        progress("bootstrap", boot_done[0], budget.bootstrap)

    progress("bootstrap", 0, budget.bootstrap)
    odds = evaluation.bootstrap_odds_ratios(X, y, features, tuned.best_params, budget, on_step=boot_step)
    progress("bootstrap", budget.bootstrap, budget.bootstrap)
    t = lap("bootstrap", t)

    progress("export", 0, 1)
    final = make_pipe().fit(X, y)
    exported = export.export_onnx(final, spec, X, threshold, parity_rows=budget.parity_rows, seed=budget.seed)
    progress("export", 1, 1)
    t = lap("export", t)

    version = registry.new_version(spec.name)
    card = {
        **card_header(spec, version),
        "label": {"name": spec.label, "definition": label_rule["definition"]},
        "onnx": exported.as_card(features),
        "threshold": threshold,
        "threshold_rule": evaluation.THRESHOLD_RULE,
        "tiers": tiers,
        "tier_rule": evaluation.TIER_RULE,
        "leakage": leakage.as_card(),
        "promotable": not leakage.flagged,
        "metrics": {
            "cv": _mean_std(cv),
            "cv_scheme": f"{budget.cv_repeats}x{budget.cv_splits} repeated stratified k-fold, all labelled rows, "
            "tuned configuration fixed",
            "nested_cv_roc_auc": {k: nested[k] for k in ("mean", "std", "outer_folds", "folds", "fold_params")},
            "test": test,
            "holdout": {"rows": int(y_test.size), "positives": int(y_test.sum()), "share": 0.2},
            "calibration_oof": calibration,
        },
        "odds_ratios": odds,
        "odds_ratio_model": "standardised logistic regression with the tuned C, l1_ratio, solver and "
        "class_weight, fitted on all labelled rows; 95% bootstrap percentile intervals "
        f"({budget.bootstrap} resamples)",
        "best_params": tuned.best_params,
        "n_configs": n_configs,
        "tuning": tuned.as_card(),
        "model": {
            "family": spec.family,
            "preprocessing": tuned.best_params["preprocessing"],
            "pipeline": repr(final),
            "parameters": tuning.model_parameters(final, spec),
            "fitted_on": "all labelled rows",
        },
        "training_data": {
            "population_rows": int(frame.attrs.get("population_rows", len(frame))),
            "rows": int(y.size),
            "positives": int(y.sum()),
            "excluded_rows": sum(excluded.values()),
            "excluded_by_feature": excluded,
            "excluded_rule": f"infinite, beyond +-{USABLE_MAX:.3g} (float32 / 4), or outside the feature's min/max",
            "fingerprint": fingerprint(frame, spec),
            "table": spec.training_table,
        },
        "reference": reference_distributions(spec, X, exported),
        "budget": budget.as_dict(),
        "library_versions": library_versions(),
        "git_commit": git_commit(),
    }

    card["comparison"] = compare.against_champion(settings, card, exported.onnx_bytes)  # None without a champion
    if card["comparison"] is not None and announce is not None:
        announce(compare.describe(card["comparison"]))
    progress("report", 0, 1)
    html = report.render_report(
        card,
        frame,
        spec,
        curves={
            "y_test": y_test.tolist(),
            "p_test": p_test.tolist(),
            "y_oof": y_train.tolist(),
            "p_oof": oof.tolist(),
            "cv_folds": {m: v["folds"] for m, v in cv.items()},
        },
    )
    html_bytes = html.encode("utf-8")
    card["report"] = {"file": registry.REPORT_FILE, "sha256": hashlib.sha256(html_bytes).hexdigest()}
    progress("report", 1, 1)
    t = lap("report", t)

    path = registry.register(
        settings.models_dir,
        card,
        {
            registry.MODEL_FILE: exported.onnx_bytes,
            registry.REPORT_FILE: html_bytes,
        },
    )
    if not promote:
        promoted, reason = False, "skipped: --no-promote"
    elif leakage.flagged:
        promoted, reason = False, "never promoted automatically: trained with leaking features"
    else:
        veto = compare.promotion_veto(settings, card["comparison"])
        promoted, reason = registry.auto_promote(settings.models_dir, card, veto)
    lap("register", t)
    timings["total"] = round(time.perf_counter() - started, 3)

    return {
        "model_version": version,
        "spec": spec.name,
        "features": features,
        "n_configs": n_configs,
        "search_rows": tuned.search_rows,
        "best_params": tuned.best_params,
        "cv": _mean_std(cv),
        "nested_cv_roc_auc": {"mean": nested["mean"], "std": nested["std"]},
        "test": test,
        "odds_ratios": {k: {kk: v[kk] for kk in ("odds_ratio", "ci_low", "ci_high")} for k, v in odds.items()},
        "leakage": list(leakage.flagged),
        "threshold": threshold,
        "tiers": [{k: t_[k] for k in ("name", "min_p", "observed_rate", "lift", "share")} for t_ in tiers],
        "onnx": {
            "sha256": exported.sha256,
            "max_abs_diff": exported.max_abs_diff,
            "label_flips": exported.label_flips,
            "rows_checked": exported.rows_checked,
        },
        "promoted": promoted,
        "promotion_reason": reason,
        "promotable": not leakage.flagged,
        "excluded_rows": sum(excluded.values()),
        "report": str(path / registry.REPORT_FILE),
        "card": str(path / registry.CARD_FILE),
        "budget": budget.name,
        "n_outer_folds": nested["outer_folds"],
        "comparison": card["comparison"],
        "timings": timings,
    }
