"""Versioned models on disk, a champion per spec, and the integrity check the scoring path relies on.

Layout::

    models_dir/<spec>/<version>/model.onnx   the exported graph
    models_dir/<spec>/<version>/card.json    what it is, how it was made, how good it is
    models_dir/<spec>/<version>/report.html  the visual report
    models_dir/<spec>/CHAMPION               the champion's version (one line, replaced atomically)
    models_dir/<spec>/promotions.log         one JSON line per promotion (audit trail)

A version folder appears in one ``rename`` of a fully written temporary folder.
``verify_model`` checks the card (its seal and contract, :mod:`mallscore.cards`)
and the ONNX file's sha256 before anything reaches onnxruntime; any mismatch,
missing file, symlink or path escaping ``models_dir`` is a ConfigError (78).

Promotion rule (automatic, after training): the first promotable model of a spec
becomes champion; a later one replaces the champion unless its nested-CV ROC-AUC
mean is lower than the champion's by more than the noise,
``sqrt(se_new^2 + se_champion^2)`` with ``se = std / sqrt(outer folds)``.
Leaky models are never promoted automatically. Rollback = promote an older version.

On the scoring path: it imports only the standard library.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from mallscore import atomic
from mallscore.cards import CARD_FORMAT, card_digest, parse_card, seal_card, verify_graph
from mallscore.errors import BadInputError, ConfigError

__all__ = ["CARD_FORMAT", "card_digest", "parse_card", "seal_card", "verify_graph"]  # re-exported: cards

CARD_FILE = "card.json"
MODEL_FILE = "model.onnx"
REPORT_FILE = "report.html"
CHAMPION_FILE = "CHAMPION"
PROMOTIONS_LOG = "promotions.log"
FILE_MODE = 0o600  # models are readable by their owner only (README, Operations: file permissions)
DIR_MODE = 0o700
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ModelNotFoundError(ConfigError):
    """No model with that version (or no champion) exists in models_dir."""


def validate_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a safe spec/version name, else raise ConfigError."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ConfigError(
            f"invalid {kind} name {name!r}: use 1-64 letters, digits, '_', '.', '-' "
            "starting with a letter or digit, without '..'"
        )
    return name


def new_version(spec: str, now: datetime | None = None) -> str:
    """A fresh version name: ``<spec>-<UTC time>-<6 random hex>`` (unique across specs)."""
    validate_name("spec", spec)
    now = now or datetime.now(UTC)
    return validate_name("version", f"{spec}-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}")


def _root(models_dir: Path) -> Path:
    return Path(models_dir).resolve()


def _inside(root: Path, *parts: str) -> Path:
    """root/parts..., refusing symlinks on the way and any path that resolves outside root."""
    path = root
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise ConfigError(f"{path} is a symbolic link; models_dir entries must be plain files and folders")
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise ConfigError(f"{path} resolves outside models_dir {root}")
    return path


def _read_file(path: Path, what: str) -> bytes:
    if path.is_symlink():
        raise ConfigError(f"{what} {path} is a symbolic link; refusing to read it")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} is missing; retrain, or promote another version") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None


def _open_private(path: Path, flags: int):
    """Open (creating it owner-only, whatever the umask) a text file for appending."""
    fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
    return os.fdopen(fd, "a", encoding="utf-8")


def register(models_dir: Path, card: dict, files: dict[str, bytes]) -> Path:
    """Write a new version folder atomically: the sealed card plus ``files`` (name -> bytes)."""
    spec = validate_name("spec", card["spec"])
    version = validate_name("version", card["version"])
    root = _root(models_dir)
    root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    spec_dir = _inside(root, spec)
    spec_dir.mkdir(exist_ok=True, mode=DIR_MODE)
    final = _inside(root, spec, version)
    if final.exists():
        raise ConfigError(f"model version {version} already exists in {spec_dir}")
    tmp = atomic.fresh_temp_dir(spec_dir, f".tmp-{version}-", family=".tmp-")  # and a killed run's leftovers go
    try:
        for name, data in files.items():
            atomic.write_new(tmp / validate_name("file", name), data, mode=FILE_MODE)
        sealed = json.dumps(seal_card(card), indent=2, sort_keys=True, allow_nan=False).encode("utf-8") + b"\n"
        atomic.write_new(tmp / CARD_FILE, sealed, mode=FILE_MODE)
        os.chmod(tmp, DIR_MODE)
        atomic.fsync_dir(tmp)  # the files' names are durable before the folder appears under its version
        os.rename(tmp, final)
    except BaseException:
        for child in tmp.glob("*"):
            child.unlink()
        if tmp.exists():
            tmp.rmdir()
        raise
    atomic.fsync_dir(spec_dir)
    return final


def verify_model(card_path: Path) -> tuple[dict, bytes]:
    """Check a card (its sha256, then its contract) and its ONNX file's sha256; return (card, onnx bytes).

    Every command that loads a model comes through here, so one card is judged
    the same way everywhere: ConfigError (exit 78) for anything wrong.
    """
    from mallscore.cards import check_contract

    card_path = Path(card_path)
    raw = _read_file(card_path, "model card")
    card = parse_card(raw, card_path)
    if not isinstance(card, dict) or card.get("card_format") != CARD_FORMAT:
        raise ConfigError(f"model card {card_path} is not a format-{CARD_FORMAT} card")
    stored = card.get("card_sha256")
    if not isinstance(stored, str) or stored != card_digest(card):
        raise ConfigError(
            f"model card {card_path} was edited after training (card_sha256 does not match its content); "
            "retrain, or promote another version"
        )
    version_dir = card_path.parent
    if card.get("version") != version_dir.name or card.get("spec") != version_dir.parent.name:
        raise ConfigError(
            f"model card {card_path} describes {card.get('spec')}/{card.get('version')}, not the folder it is in"
        )
    check_contract(card)  # the scoring contract (a classifier's, or a groups card's): features, inputs, outputs
    onnx_info = card.get("onnx") or {}
    if not isinstance(onnx_info, dict) or onnx_info.get("file") != MODEL_FILE:
        raise ConfigError(f"model card {card_path} names an unexpected model file {onnx_info.get('file')!r}")
    onnx_bytes = _read_file(version_dir / MODEL_FILE, "model file")
    if hashlib.sha256(onnx_bytes).hexdigest() != onnx_info.get("sha256"):
        raise ConfigError(
            f"model file {version_dir / MODEL_FILE} does not match the sha256 in its card (changed after "
            "training?); retrain, or promote another version"
        )
    return card, onnx_bytes


def _spec_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and _NAME.match(p.name))


def _version_dirs(spec_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in spec_dir.iterdir()
        if p.is_dir() and not p.is_symlink() and _NAME.match(p.name) and (p / CARD_FILE).exists()
    )


def find_model(models_dir: Path, version: str) -> Path:
    """The folder of ``version`` (searched across specs), or ModelNotFoundError."""
    validate_name("version", version)
    root = _root(models_dir)
    hits = [_inside(root, d.name, version) for d in _spec_dirs(root) if (d / version).is_dir()]
    if not hits:
        raise ModelNotFoundError(f"no model version {version!r} in {root}; see `mallscore models list`")
    if len(hits) > 1:
        raise ConfigError(f"model version {version!r} exists under several specs: {[str(h) for h in hits]}")
    return hits[0]


def card_path(models_dir: Path, version: str) -> Path:
    """Path of the card of ``version``."""
    return find_model(models_dir, version) / CARD_FILE


def load_card(models_dir: Path, version: str) -> dict:
    """The verified card of ``version``."""
    card, _ = verify_model(card_path(models_dir, version))
    return card


def champion(models_dir: Path, spec: str = "default") -> str | None:
    """The champion version of ``spec``, or None when there is none yet."""
    root = _root(models_dir)
    pointer = _inside(root, validate_name("spec", spec), CHAMPION_FILE)
    if not pointer.exists():
        return None
    version = _read_file(pointer, "champion pointer").decode("utf-8", "replace").strip()
    return validate_name("version", version)


def champion_card_path(models_dir: Path, spec: str = "default") -> Path:
    """The card path of the champion of ``spec``, or ModelNotFoundError (exit 78)."""
    version = champion(models_dir, spec)
    if version is None:
        raise ModelNotFoundError(f"no champion model for spec {spec!r} in {_root(models_dir)}; run `mallscore train`")
    return _inside(_root(models_dir), spec, version, CARD_FILE)


def _summary(card: dict) -> dict:
    """The key figures of a verified card for listings (a field of the wrong shape shows as None)."""
    metrics = card.get("metrics") if isinstance(card.get("metrics"), dict) else {}
    test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
    leakage = card.get("leakage") if isinstance(card.get("leakage"), dict) else {}
    return {
        "spec": card.get("spec"),
        "version": card.get("version"),
        "created_at": card.get("created_at"),
        "nested_cv_roc_auc": metrics.get("nested_cv_roc_auc"),
        "test_roc_auc": test.get("roc_auc"),
        "threshold": card.get("threshold"),
        "leakage": leakage.get("flagged", []),
        "promotable": card.get("promotable"),
    }


def list_models(models_dir: Path, spec: str | None = None) -> list[dict]:
    """Every registered model (newest first) with its key figures, champion flag and integrity status."""
    root = _root(models_dir)
    rows = []
    for spec_dir in _spec_dirs(root):
        if spec is not None and spec_dir.name != spec:
            continue
        try:
            current = champion(root, spec_dir.name)
        except ConfigError:
            current = None
        for vdir in _version_dirs(spec_dir):
            try:
                card, onnx_bytes = verify_model(vdir / CARD_FILE)
                verify_graph(card, onnx_bytes)
                row = _summary(card)
                row["status"] = "ok"
            except ConfigError as exc:  # this model is broken; the others are still listed
                row = {"spec": spec_dir.name, "version": vdir.name, "created_at": None, "status": f"invalid: {exc}"}
            row["champion"] = vdir.name == current
            rows.append(row)
    rows.sort(key=lambda r: (r.get("created_at") or "", r["version"]), reverse=True)
    return rows


def _se(block: dict | None) -> tuple[float, float] | None:
    if not block or block.get("mean") is None:
        return None
    n = max(int(block.get("outer_folds") or 5), 1)
    return float(block["mean"]), float(block.get("std") or 0.0) / math.sqrt(n)


def promotion_decision(new_card: dict, champion_card: dict | None) -> tuple[bool, str]:
    """Whether ``new_card`` should replace ``champion_card`` under the documented rule, and why."""
    if not new_card.get("promotable", False):
        return False, "not promotable (trained with leaking features)"
    if champion_card is None:
        return True, "first model of this spec"
    new = _se((new_card.get("metrics") or {}).get("nested_cv_roc_auc"))
    old = _se((champion_card.get("metrics") or {}).get("nested_cv_roc_auc"))
    if new is None:
        return False, "no nested-CV ROC-AUC to compare"
    if old is None:
        return True, "champion has no nested-CV ROC-AUC"
    noise = math.sqrt(new[1] ** 2 + old[1] ** 2)
    margin = new[0] - old[0]
    if margin < -noise:
        return False, (
            f"nested-CV ROC-AUC {new[0]:.3f} is worse than champion {champion_card.get('version')} "
            f"({old[0]:.3f}) by more than the noise ({noise:.3f})"
        )
    return True, (f"nested-CV ROC-AUC {new[0]:.3f} vs champion {old[0]:.3f}: not worse beyond the noise ({noise:.3f})")


def _log_promotion(
    root: Path, spec: str, version: str | None, previous: str | None, reason: str, comparison: dict | None = None
) -> None:
    """Append one line to the spec's promotions log (with the comparison's headline, if any), durably."""
    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "version": version, "previous": previous}
    entry.update({"reason": reason, **({"comparison": comparison} if comparison else {})})
    with _open_private(_inside(root, spec, PROMOTIONS_LOG), os.O_WRONLY | os.O_APPEND) as log:
        log.write(json.dumps(entry, sort_keys=True) + "\n")
        log.flush()
        os.fsync(log.fileno())


def _last_logged(root: Path, spec: str) -> str | None:
    """The version the spec's promotions log names last (None without a log or a readable last line)."""
    path = _inside(root, spec, PROMOTIONS_LOG)
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            entry = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue  # a line cut by a kill
        return entry.get("version") if isinstance(entry, dict) else None
    return None


def reconcile(root: Path, spec: str) -> str | None:
    """Make the promotions log end with the champion the pointer names; return a note when it had to.

    A promotion writes its log line first, then moves ``CHAMPION``: a kill in
    between leaves a line for a promotion that did not happen. The next
    promotion (or training) of the spec, under the spec lock, appends a line
    saying so, so the log's last line always names the real champion.
    """
    try:
        current = champion(root, spec)
    except ConfigError:
        return None
    logged = _last_logged(root, spec)
    if current == logged or (current is None and logged is None):
        return None
    note = f"reconciled: the champion is {current}; a promotion to {logged} was interrupted before it took effect"
    _log_promotion(root, spec, current, logged, note)
    return note


def _write_pointer(root: Path, spec: str, version: str) -> None:
    """Replace the spec's ``CHAMPION`` pointer atomically."""
    atomic.write_text(_inside(root, spec, CHAMPION_FILE), version + "\n", mode=FILE_MODE)


def _set_champion(root: Path, spec: str, version: str, previous: str | None, reason: str, comparison=None) -> None:
    """Log the promotion, then move the pointer: the pointer never names a version the log lacks."""
    _log_promotion(root, spec, version, previous, reason, comparison)
    _write_pointer(root, spec, version)


def promote(models_dir: Path, version: str, *, allow_flagged: bool = False, reason: str = "manual", comparison=None):
    """Make ``version`` the champion of its spec (after verifying it); rollback is promoting an older one."""
    root = _root(models_dir)
    path = find_model(root, version)
    with _spec_lock(root, path.parent.name):
        return _promote(root, version, allow_flagged=allow_flagged, reason=reason, comparison=comparison)


def _promote(root: Path, version: str, *, allow_flagged=False, reason: str = "manual", comparison=None) -> dict:
    path = find_model(root, version)
    card, onnx_bytes = verify_model(path / CARD_FILE)
    verify_graph(card, onnx_bytes)
    if not card.get("promotable", False) and not allow_flagged:
        flagged = ", ".join((card.get("leakage") or {}).get("flagged", [])) or "unknown"
        raise BadInputError(
            f"model {version} was trained with leaking features ({flagged}) and cannot be promoted; "
            "pass --allow-leakage to promote it anyway"
        )
    spec = card["spec"]
    try:
        previous = champion(root, spec)
    except ConfigError:
        previous = None
    _set_champion(root, spec, version, previous, reason, comparison)
    return {"spec": spec, "version": version, "previous": previous}


@contextlib.contextmanager
def _spec_lock(root: Path, spec: str):
    """Serialise read-decide-write on one spec's champion across processes (two trainings ending together)."""
    spec_dir = _inside(root, validate_name("spec", spec))
    spec_dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    with _open_private(_inside(root, spec, ".lock"), os.O_WRONLY | os.O_APPEND) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            reconcile(root, spec)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def auto_promote(models_dir: Path, card: dict, veto: str | None = None) -> tuple[bool, str]:
    """Apply the promotion rule to a freshly registered model; promote it when the rule says so and no ``veto``."""
    root = _root(models_dir)
    with _spec_lock(root, card["spec"]):
        return _auto_promote(root, card, veto)


def _auto_promote(root: Path, card: dict, veto: str | None = None) -> tuple[bool, str]:
    spec = card["spec"]
    current = None
    try:
        current_version = champion(root, spec)
        if current_version is not None:
            current, _ = verify_model(_inside(root, spec, current_version, CARD_FILE))
    except ConfigError as exc:
        reason = f"champion unreadable ({exc}); replaced"
        if card.get("promotable", False):
            _promote(root, card["version"], reason=reason)
            return True, reason
        return False, "not promotable (trained with leaking features)"
    ok, reason = promotion_decision(card, current)
    if ok and veto:
        return False, f"{reason}; not promoted: {veto}; to promote by hand: mallscore models promote {card['version']}"
    if ok:
        _promote(root, card["version"], reason=reason, comparison=card.get("comparison"))
    return ok, reason


def check_writable(models_dir: Path) -> Path:
    """Create ``models_dir`` if needed and prove it is writable (ConfigError if not), before long work."""
    root = _root(models_dir)
    try:
        root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        fd, probe = tempfile.mkstemp(dir=root, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            f"models folder {root} is not writable ({exc.strerror}); fix its permissions or pass --models-dir "
            "before training"
        ) from None
    return root
