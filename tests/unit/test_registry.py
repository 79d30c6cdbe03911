"""Registry: atomic versions, champion promotion and rollback, tamper and path-escape refusal."""

import hashlib
import json
import os
from pathlib import Path

import pytest

from mallscore import registry
from mallscore.errors import BadInputError, ConfigError


def _tiny_graph() -> bytes:
    """A real ONNX graph with the card's interface (float [N, 1] in, float [N, 2] out); its maths do not matter."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Concat", ["age", "age"], ["probabilities"], axis=1)],
        "tiny",
        [helper.make_tensor_value_info("age", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
    )
    return helper.make_model(graph).SerializeToString()


ONNX = _tiny_graph()


def _card(
    spec: str, version: str, nested: float = 0.70, std: float = 0.03, promotable: bool = True, onnx: bytes = ONNX
) -> dict:
    return {
        "card_format": 1,
        "spec": spec,
        "version": version,
        "created_at": f"2026-01-01T00:00:{len(version) % 60:02d}+00:00",
        "onnx": {
            "file": "model.onnx",
            "sha256": hashlib.sha256(onnx).hexdigest(),
            "inputs": ["age"],
            "probability_output": "probabilities",
        },
        "features": [{"name": "age", "type": "float32", "min": 12, "max": 120, "values": None}],
        "tiers": [{"name": "high", "min_p": 0.5, "min_score": 51}, {"name": "low", "min_p": 0.0, "min_score": 1}],
        "metrics": {"nested_cv_roc_auc": {"mean": nested, "std": std, "outer_folds": 5}},
        "leakage": {"flagged": [] if promotable else ["spending_score"]},
        "promotable": promotable,
        "threshold": 0.5,
    }


def _register(root, spec="default", version="default-v1", **kw):
    card = _card(spec, version, **kw)
    path = registry.register(root, card, {"model.onnx": kw.get("onnx", ONNX), "report.html": b"<html></html>"})
    return path


def test_register_writes_sealed_card_and_verifies(tmp_path):
    path = _register(tmp_path)
    assert sorted(p.name for p in path.iterdir()) == ["card.json", "model.onnx", "report.html"]
    card, onnx = registry.verify_model(path / "card.json")
    assert onnx == ONNX
    assert card["card_sha256"] == registry.card_digest(card)
    assert card["onnx"]["sha256"] == hashlib.sha256((path / "model.onnx").read_bytes()).hexdigest()
    assert not [p for p in (tmp_path / "default").iterdir() if p.name.startswith(".tmp")]
    with pytest.raises(ConfigError, match="already exists"):
        _register(tmp_path)


def test_first_model_becomes_champion_then_rule_and_rollback(tmp_path):
    first = _register(tmp_path, version="default-v1", nested=0.70)
    card1, _ = registry.verify_model(first / "card.json")
    assert registry.champion(tmp_path) is None
    assert registry.auto_promote(tmp_path, card1) == (True, "first model of this spec")
    assert registry.champion(tmp_path) == "default-v1"

    # slightly worse, within the noise: replaces the champion
    second = _register(tmp_path, version="default-v2", nested=0.69)
    ok, reason = registry.auto_promote(tmp_path, registry.verify_model(second / "card.json")[0])
    assert ok and "not worse beyond the noise" in reason
    assert registry.champion(tmp_path) == "default-v2"

    # clearly worse (0.10 below, noise ~0.02): stays out
    third = _register(tmp_path, version="default-v3", nested=0.59)
    ok, reason = registry.auto_promote(tmp_path, registry.verify_model(third / "card.json")[0])
    assert not ok and "worse than champion" in reason
    assert registry.champion(tmp_path) == "default-v2"

    # rollback = promoting an older version
    assert registry.promote(tmp_path, "default-v1") == {
        "spec": "default",
        "version": "default-v1",
        "previous": "default-v2",
    }
    assert registry.champion(tmp_path) == "default-v1"
    assert registry.champion_card_path(tmp_path) == tmp_path.resolve() / "default" / "default-v1" / "card.json"
    log = [json.loads(line) for line in (tmp_path / "default" / "promotions.log").read_text().splitlines()]
    assert [e["version"] for e in log] == ["default-v1", "default-v2", "default-v1"]
    assert not [p for p in (tmp_path / "default").iterdir() if p.name.startswith(".CHAMPION")]
    rows = registry.list_models(tmp_path)
    assert {r["version"]: r["champion"] for r in rows} == {"default-v1": True, "default-v2": False, "default-v3": False}
    assert all(r["status"] == "ok" for r in rows)


def test_leaky_model_is_never_auto_promoted_and_manual_promotion_needs_the_flag(tmp_path):
    path = _register(tmp_path, spec="seed", version="seed-v1", promotable=False)
    card, _ = registry.verify_model(path / "card.json")
    assert registry.auto_promote(tmp_path, card)[0] is False
    assert registry.champion(tmp_path, "seed") is None
    with pytest.raises(BadInputError, match="spending_score"):
        registry.promote(tmp_path, "seed-v1")
    registry.promote(tmp_path, "seed-v1", allow_flagged=True)
    assert registry.champion(tmp_path, "seed") == "seed-v1"


def test_tampered_model_file_is_refused_before_loading(tmp_path):
    path = _register(tmp_path)
    data = bytearray((path / "model.onnx").read_bytes())
    data[-1] ^= 0x01
    (path / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="does not match the sha256") as exc:
        registry.verify_model(path / "card.json")
    assert exc.value.exit_code == 78
    with pytest.raises(ConfigError):
        registry.promote(tmp_path, "default-v1")
    assert registry.list_models(tmp_path)[0]["status"].startswith("invalid")


def test_edited_card_is_detected(tmp_path):
    path = _register(tmp_path)
    card = json.loads((path / "card.json").read_text())
    card["threshold"] = 0.1  # a hand edit: sha256 of the model file still matches
    (path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ConfigError, match="edited after training"):
        registry.verify_model(path / "card.json")


def test_missing_file_and_broken_json_are_config_errors(tmp_path):
    path = _register(tmp_path)
    (path / "model.onnx").unlink()
    with pytest.raises(ConfigError, match="missing"):
        registry.verify_model(path / "card.json")
    (path / "card.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        registry.verify_model(path / "card.json")


def test_card_moved_to_another_folder_is_refused(tmp_path):
    path = _register(tmp_path)
    other = tmp_path / "default" / "default-v9"
    other.mkdir()
    for f in path.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ConfigError, match="not the folder it is in"):
        registry.verify_model(other / "card.json")


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden", "", "x" * 65, "v1/../../etc", "a..b"])
def test_unsafe_names_are_refused(tmp_path, name):
    with pytest.raises(ConfigError):
        registry.find_model(tmp_path, name)
    with pytest.raises(ConfigError):
        registry.register(tmp_path, _card("default", name), {"model.onnx": ONNX})
    assert not (tmp_path.parent / "escape").exists()


def test_champion_pointer_cannot_escape(tmp_path):
    _register(tmp_path)
    (tmp_path / "default" / "CHAMPION").write_text("../../../etc\n")
    with pytest.raises(ConfigError):
        registry.champion(tmp_path)


def test_symlinks_are_refused(tmp_path):
    real = _register(tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "model.onnx").write_bytes(ONNX)
    os.symlink(tmp_path / "default" / "default-v1", tmp_path / "default" / "default-v2")
    with pytest.raises(ConfigError, match="symbolic link"):
        registry.card_path(tmp_path, "default-v2")
    (real / "model.onnx").unlink()
    os.symlink(outside / "model.onnx", real / "model.onnx")
    with pytest.raises(ConfigError, match="symbolic link"):
        registry.verify_model(real / "card.json")


def test_no_models_dir_means_no_models(tmp_path):
    assert registry.list_models(tmp_path / "absent") == []
    assert registry.champion(tmp_path / "absent") is None
    with pytest.raises(ConfigError, match="no champion"):
        registry.champion_card_path(tmp_path / "absent")
    assert not (tmp_path / "absent").exists()


def test_new_version_names_are_valid_and_distinct():
    a, b = registry.new_version("default"), registry.new_version("default")
    assert a != b and a.startswith("default-")
    registry.validate_name("version", a)


def _wait_until_blocked_on_a_file_lock(proc, timeout: float = 60) -> None:
    """Poll /proc/locks (Linux) until ``proc`` is listed as waiting for a file lock."""
    import time

    locks = Path("/proc/locks")
    if not locks.exists():
        pytest.skip("needs /proc/locks to see a process waiting for a lock")
    deadline = time.monotonic() + timeout
    while True:
        waiting = {line.split()[5] for line in locks.read_text().splitlines() if line.split()[1:2] == ["->"]}
        if str(proc.pid) in waiting:
            return
        assert proc.poll() is None, "the promotion ended without waiting for the lock"
        assert time.monotonic() < deadline, "the promotion never reached the lock"
        time.sleep(0.01)


def test_promotion_waits_for_another_process_holding_the_spec_lock(tmp_path):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    _register(tmp_path, version="default-v1")
    code = f"from mallscore import registry; registry.promote({str(tmp_path)!r}, 'default-v1')"
    with registry._spec_lock(tmp_path.resolve(), "default"):
        proc = subprocess.Popen([sys.executable, "-c", code], env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})
        _wait_until_blocked_on_a_file_lock(
            proc
        )  # it reached the lock and waits there (seen, not assumed after a sleep)
        assert registry.champion(tmp_path) is None
    assert proc.wait(timeout=30) == 0
    assert registry.champion(tmp_path) == "default-v1"


def test_model_files_and_folders_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = _register(tmp_path / "models")
        registry.promote(tmp_path / "models", "default-v1")
    finally:
        os.umask(old)
    spec_dir = path.parent
    for folder in (tmp_path / "models", spec_dir, path):
        assert os.stat(folder).st_mode & 0o777 == 0o700, folder
    for name in ("model.onnx", "card.json", "report.html"):
        assert os.stat(path / name).st_mode & 0o777 == 0o600, name
    for name in ("CHAMPION", "promotions.log", ".lock"):
        assert os.stat(spec_dir / name).st_mode & 0o777 == 0o600, name
