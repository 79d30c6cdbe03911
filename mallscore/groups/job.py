"""``mallscore groups train``: read the features view, fit, export (parity-gated), card, register, promote.

1. read ``features_behaviour`` (no feature computed here), sampled like the classifier's training
   set above ``MAX_ROWS`` (by a hash of customer_id); rows a float32 graph cannot use, or outside
   the spec's ranges, are left out and counted;
2. choose k (:mod:`mallscore.groups.fit`) and fit the final k-means;
3. export to ONNX (skl2onnx KMeans: one float32 ``[N, 1]`` input per feature, int64 ``label``) and
   gate it: onnxruntime must give scikit-learn's group on the training rows and 10,000 synthetic
   rows spread over the features' ranges (a row may differ only where its two nearest centres are
   within float32 rounding of each other, a tie; counted on the card), else exit 78, nothing registered;
4. name the groups (kept from the champion where centres barely moved), write the card and the
   report, register the version atomically, and promote it unless ``--no-promote`` or its mean
   silhouette is below the champion's by more than their combined spread.
"""

from __future__ import annotations

import hashlib
import logging
import time

import numpy as np

from mallscore import registry
from mallscore.errors import BadInputError, ConfigError, InputMissingError
from mallscore.groups import KIND, SPEC
from mallscore.groups.contract import LABEL_OUTPUT
from mallscore.settings import Settings
from mallscore.specs import GROUPS, GroupSpec, card_header

log = logging.getLogger(__name__)

MAX_ROWS = 20_000
PARITY_ROWS = 10_000
TIE_GAP = 1e-4  # squared scaled distance: float32 rounding of the graph's arithmetic is far below this
USABLE_MAX = float(np.finfo(np.float32).max) / 4
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


def read_features(con, spec: GroupSpec = GROUPS, max_rows: int = MAX_ROWS) -> tuple[np.ndarray, np.ndarray, int]:
    """(customer ids, feature rows, population count) from the spec's view, sampled above ``max_rows``."""
    table = spec.feature_table
    present = {
        r[0]
        for r in con.execute(
            "select column_name from information_schema.columns where table_name = ?", [table]
        ).fetchall()
    }
    if not present:
        raise InputMissingError(
            f"relation {table!r} does not exist in the warehouse; load customers and run `mallscore features` first"
        )
    missing = [c for c in ["customer_id", *spec.feature_names] if c not in present]
    if missing:
        raise BadInputError(f"{table} lacks column(s) {missing} needed by spec {spec.name!r}")
    cols = ", ".join(f'cast("{c}" as double) as "{c}"' for c in spec.feature_names)
    population = int(con.execute(f'select count(*) from "{table}"').fetchall()[0][0])
    data = con.execute(
        f'select * from (select customer_id, {cols} from "{table}" order by hash(customer_id), customer_id limit ?) '
        "order by customer_id",
        [max_rows],
    ).fetchnumpy()
    ids = np.asarray(data["customer_id"], dtype=np.int64)
    X = (
        np.column_stack([np.asarray(data[c], dtype=float) for c in spec.feature_names])
        if len(ids)
        else np.empty((0, 2))
    )
    return ids, X, population


def usable_rows(X: np.ndarray, spec: GroupSpec = GROUPS) -> np.ndarray:
    """Mask of rows the model can use: finite, within a quarter of float32's range and the spec's bounds."""
    ok = np.isfinite(X).all(axis=1) & (np.abs(X) <= USABLE_MAX).all(axis=1)
    for j, f in enumerate(spec.features):
        if f.min is not None:
            ok &= X[:, j] >= f.min
        if f.max is not None:
            ok &= X[:, j] <= f.max
    return ok


def convert(pipeline, features: list[str]) -> bytes:
    """skl2onnx: one float32 [None, 1] input per feature, joined by a Concat; outputs ``label`` (int64) and
    ``scores``."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    from mallscore.training.export import concat_feature_inputs

    model = convert_sklearn(
        pipeline,
        initial_types=[(name, FloatTensorType([None, 1])) for name in features],
        target_opset=TARGET_OPSET,
    )
    return concat_feature_inputs(model).SerializeToString()


def onnx_labels(onnx_bytes: bytes, features: list[str], X32: np.ndarray) -> np.ndarray:
    """The group label onnxruntime gives each float32 row."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    feeds = {name: np.ascontiguousarray(X32[:, [j]]) for j, name in enumerate(features)}
    return np.asarray(session.run([LABEL_OUTPUT], feeds)[0]).astype(np.int64)


def synthetic_rows(spec: GroupSpec, X: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` rows uniform over each feature's allowed range (the observed range widened where open)."""
    rng = np.random.default_rng(seed)
    cols = []
    for j, f in enumerate(spec.features):
        lo_obs, hi_obs = float(X[:, j].min()), float(X[:, j].max())
        span = max(hi_obs - lo_obs, 1.0)
        lo = f.min if f.min is not None else lo_obs - 0.5 * span
        hi = f.max if f.max is not None else hi_obs + 0.5 * span
        cols.append(rng.uniform(lo, hi, size=n))
    return np.column_stack(cols)


def check_parity(pipeline, onnx_bytes: bytes, features: list[str], rows: np.ndarray) -> dict:
    """onnxruntime's labels against scikit-learn's on float32-rounded rows: mismatches beyond ties, ties."""
    X32 = np.asarray(rows, dtype=np.float32)
    X64 = X32.astype(np.float64)
    ours = onnx_labels(onnx_bytes, features, X32)
    theirs = pipeline.predict(X64)
    d = pipeline[-1].transform(pipeline[0].transform(X64)) ** 2  # squared distance to every centre
    differ = np.flatnonzero(ours != theirs)
    gaps = np.abs(d[differ, ours[differ]] - d[differ, theirs[differ]])
    return {
        "rows_checked": int(len(rows)),
        "mismatches": int((gaps > TIE_GAP).sum()),
        "ties": int((gaps <= TIE_GAP).sum()),
    }


def export_onnx(pipeline, spec: GroupSpec, X: np.ndarray, converter=None) -> tuple[bytes, dict]:
    """Convert and gate the model (ConfigError, exit 78, when onnxruntime disagrees with scikit-learn)."""
    try:
        onnx_bytes = (converter or convert)(pipeline, spec.feature_names)
    except Exception as exc:  # skl2onnx raises many types; all mean "cannot export"
        raise ConfigError(f"ONNX conversion of the groups model failed: {type(exc).__name__}: {exc}") from None
    rows = np.vstack([X, synthetic_rows(spec, X, PARITY_ROWS)])
    try:
        figures = check_parity(pipeline, onnx_bytes, spec.feature_names, rows)
    except Exception as exc:  # onnxruntime refuses the graph
        raise ConfigError(f"the exported groups model cannot be run by onnxruntime: {exc}") from None
    if figures["mismatches"]:
        raise ConfigError(
            f"ONNX parity gate failed for the groups model: {figures['mismatches']} of {figures['rows_checked']} rows "
            "get another group from onnxruntime than from scikit-learn; nothing was registered"
        )
    return onnx_bytes, figures


def _champion_card(settings: Settings) -> dict | None:
    """The current groups champion's verified card, or None (no champion, or an unreadable one)."""
    try:
        version = registry.champion(settings.models_dir, SPEC)
        if version is None:
            return None
        card, _ = registry.verify_model(registry.card_path(settings.models_dir, version))
        return card
    except ConfigError as exc:
        log.warning("the groups champion cannot be read (%s); names are generated afresh", exc)
        return None


def promotion_decision(card: dict, champion: dict | None) -> tuple[bool, str]:
    """Promote unless the new mean silhouette is below the champion's by more than their combined spread."""
    if champion is None:
        return True, "first model of this spec"
    new = card["silhouette"][str(card["k"])]
    old = (champion.get("silhouette") or {}).get(str(champion.get("k")))
    if not old:
        return True, "champion has no silhouette"
    noise = float(np.hypot(new["std"], old["std"]))
    if new["mean"] - old["mean"] < -noise:
        return False, (
            f"mean silhouette {new['mean']:.3f} is below champion {champion['version']} ({old['mean']:.3f}) "
            f"by more than the spread ({noise:.3f})"
        )
    return True, f"mean silhouette {new['mean']:.3f} vs champion {old['mean']:.3f}: not worse beyond the spread"


def build_card(spec: GroupSpec, version: str, fitted, X: np.ndarray, names: list[str], kept: list[str]) -> dict:
    """The groups card (without the onnx, data and report blocks, added by :func:`train_groups`)."""
    scaler, kmeans = fitted.pipeline[0], fitted.pipeline[-1]
    centres = scaler.inverse_transform(kmeans.cluster_centers_)
    sizes = np.bincount(fitted.labels, minlength=fitted.k)
    groups = [
        {
            "index": i,
            "name": names[i],
            "size": int(sizes[i]),
            "share": float(sizes[i] / len(X)),
            "centre": {f: float(centres[i, j]) for j, f in enumerate(spec.feature_names)},
            "centre_scaled": [float(v) for v in kmeans.cluster_centers_[i]],
            "name_kept": names[i] in kept,
        }
        for i in range(fitted.k)
    ]
    return {
        **card_header(spec, version),
        "kind": KIND,
        "score_table": spec.score_table,
        "assigned_when": "spending_score is not null and every feature passes the card's ranges; else NULL",
        "scaling": {
            "method": "standard",
            "mean": [float(v) for v in scaler.mean_],
            "scale": [float(v) for v in scaler.scale_],
        },
        "k": fitted.k,
        "choice": {"mode": fitted.mode, "k": fitted.k, "reason": fitted.reason, "k_range": list(spec.k_range)},
        "silhouette": {str(k): v for k, v in fitted.silhouette.items()},
        "groups": groups,
        "kmeans": {
            "n_init": int(kmeans.n_init),
            "random_state": int(kmeans.random_state),
            "inertia": float(kmeans.inertia_),
        },
        "promotable": True,
    }


def train_groups(
    settings: Settings,
    X: np.ndarray,
    ids: np.ndarray,
    population: int,
    *,
    k: int | None = None,
    promote: bool = True,
    progress=None,
) -> dict:
    """Fit, export, register and (unless told not to) promote a groups model on rows read by :func:`read_features`."""
    from mallscore.groups import fit, report
    from mallscore.training.job import git_commit, library_versions

    spec = GROUPS
    started = time.perf_counter()
    ok = usable_rows(X, spec)
    excluded = int((~ok).sum())
    X, ids = X[ok], ids[ok]
    lo, hi = spec.k_range
    if k is not None and not lo <= k <= hi:
        raise BadInputError(f"--k must be between {lo} and {hi}, got {k}")
    if len(X) < max(hi + 1, 20):
        raise InputMissingError(
            f"{spec.feature_table} has {len(X)} usable customers with a known score; need at least {max(hi + 1, 20)}"
        )
    fitted = fit.fit_groups(X, k, spec.k_range, progress)
    onnx_bytes, parity = export_onnx(fitted.pipeline, spec, X)
    champion = _champion_card(settings)
    scaler = fitted.pipeline[0]
    z = fitted.pipeline[-1].cluster_centers_
    previous = None
    if champion is not None:
        previous = [
            (g["name"], scaler.transform(np.array([[g["centre"][f] for f in spec.feature_names]]))[0])
            for g in champion["groups"]
        ]
    names, kept = fit.stable_names(z, spec.feature_names, previous)
    version = registry.new_version(spec.name)
    card = build_card(spec, version, fitted, X, names, kept)
    card["onnx"] = {
        "file": registry.MODEL_FILE,
        "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "inputs": spec.feature_names,
        "input_shape": [None, 1],
        "input_type": "float32",
        "label_output": LABEL_OUTPUT,
        **parity,
        "tie_gap": TIE_GAP,
    }
    digest = hashlib.sha256(ids.astype("<i8").tobytes())
    digest.update(np.ascontiguousarray(X, dtype="<f8").tobytes())
    card["training_data"] = {
        "rows": int(len(X)),
        "population_rows": population,
        "excluded_rows": excluded,
        "fingerprint": digest.hexdigest(),
    }
    card["names"] = {
        "kept_from": champion["version"] if champion else None,
        "kept": kept,
        "keep_distance": fit.KEEP_NAME_DISTANCE,
    }
    card["library_versions"] = library_versions()
    card["git_commit"] = git_commit()
    html = report.render_report(card, X, fitted.labels).encode("utf-8")
    card["report"] = {"file": registry.REPORT_FILE, "sha256": hashlib.sha256(html).hexdigest()}
    path = registry.register(settings.models_dir, card, {registry.MODEL_FILE: onnx_bytes, registry.REPORT_FILE: html})
    promoted, reason = False, "--no-promote"
    if promote:
        with registry._spec_lock(registry._root(settings.models_dir), spec.name):
            promoted, reason = promotion_decision(card, _champion_card(settings))
            if promoted:
                registry._promote(registry._root(settings.models_dir), version, reason=reason)
    return {
        "version": version,
        "spec": spec.name,
        "k": fitted.k,
        "choice": card["choice"],
        "silhouette": {str(kk): {"mean": v["mean"], "std": v["std"]} for kk, v in fitted.silhouette.items()},
        "groups": [
            {"name": g["name"], "size": g["size"], "share": g["share"], "centre": g["centre"]} for g in card["groups"]
        ],
        "names_kept": kept,
        "onnx": {"sha256": card["onnx"]["sha256"], **parity},
        "training_data": card["training_data"],
        "promoted": promoted,
        "promotion_reason": reason,
        "card": str(path / registry.CARD_FILE),
        "report": str(path / registry.REPORT_FILE),
        "seconds": round(time.perf_counter() - started, 3),
    }
