"""Models that must not be trusted, and names that try to leave the models folder, through the real CLI.

Each untrusted model is refused before anything is written: exit 78, one line
on stderr, every file beside the warehouse (warehouse, snapshot) byte-identical.
Only ONNX is ever loaded: a pickle dressed up as ``model.onnx`` with a matching,
re-sealed card fails to parse, and the code its ``__reduce__`` would run never runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from mallscore import registry
from mallscore.settings import Settings
from tests.scoring_support import run_cli, seed_customers, write_model


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Settings:
    """300 known + 200 new customers, champion v1, one successful run (segments and a snapshot exist)."""
    root = tmp_path_factory.mktemp("untrusted")
    settings = Settings(warehouse=root / "wh" / "mallscore.duckdb", models_dir=root / "models", lock_timeout=0.5)
    seed_customers(settings)
    write_model(settings.models_dir, "v1")
    done = run_cli(settings, "score")
    assert done.returncode == 0, done.stderr
    return settings


def _own_models(base: Settings, tmp_path: Path) -> Settings:
    models = tmp_path / "models"
    shutil.copytree(base.models_dir, models, symlinks=True)
    return Settings(warehouse=base.warehouse, models_dir=models, lock_timeout=0.5)


def _files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


class _Marker:
    """Unpickling this calls open(path, "w"): proof that something unpickled it."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _reseal(card_file: Path, **changes) -> None:
    card = json.loads(card_file.read_text())
    for key, value in changes.items():
        if key == "onnx_sha256":
            card["onnx"]["sha256"] = value
        else:
            card[key] = value
    card_file.write_text(json.dumps(registry.seal_card(card), indent=2))


def _tamper(case: str, settings: Settings, marker: Path) -> None:
    version = settings.models_dir / "default" / "v1"
    if case == "flipped_byte":
        data = bytearray((version / "model.onnx").read_bytes())
        data[len(data) // 2] ^= 0x01
        (version / "model.onnx").write_bytes(bytes(data))
    elif case == "edited_card":
        card = json.loads((version / "card.json").read_text())
        card["threshold"] = 0.05  # everyone a high spender, by hand, sha256 left as it was
        (version / "card.json").write_text(json.dumps(card, indent=2))
    elif case == "missing_onnx":
        (version / "model.onnx").unlink()
    elif case == "missing_card":
        (version / "card.json").unlink()
    elif case == "pickle_resealed":
        payload = pickle.dumps(_Marker(marker))
        (version / "model.onnx").write_bytes(payload)
        _reseal(version / "card.json", onnx_sha256=hashlib.sha256(payload).hexdigest())
    elif case == "lacks_feature":
        write_model(settings.models_dir, "v2", features=("age", "annual_income", "loyalty_points"))
    else:  # pragma: no cover
        raise AssertionError(case)


CASES = {
    "flipped_byte": "does not match the sha256 in its card",
    "edited_card": "was edited after training",
    "missing_onnx": "model.onnx is missing",
    "missing_card": "card.json is missing",
    "pickle_resealed": "INVALID_PROTOBUF",
    "lacks_feature": "features_customer has no column 'loyalty_points'",
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_untrusted_model_is_refused_before_any_write(base: Settings, tmp_path: Path, case: str) -> None:
    settings = _own_models(base, tmp_path)
    marker = tmp_path / "UNPICKLED"
    _tamper(case, settings, marker)
    before = _files(settings.warehouse.parent)

    done = run_cli(settings, "score", "--all")

    assert done.returncode == 78, done.stderr
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("mallscore: ") and CASES[case] in done.stderr
    assert _files(settings.warehouse.parent) == before  # warehouse and snapshot byte-identical, no WAL left
    if case == "pickle_resealed":
        # every command that reads model bytes: none unpickles them
        assert run_cli(settings, "rescore", "1").returncode == 78
        exported = run_cli(settings, "export-sql")
        assert exported.returncode == 78 and "not a readable ONNX graph" in exported.stderr
        assert run_cli(settings, "rescore", "1", "--write").returncode == 78
    assert not marker.exists()


# --- names that try to escape the models folder -------------------------------------------


@pytest.fixture(scope="module")
def escape_setup(tmp_path_factory) -> tuple[Settings, Path]:
    """models/ with champion v1, plus a real model `evil` outside it that models/default/evil links to."""
    root = tmp_path_factory.mktemp("escape")
    settings = Settings(warehouse=root / "wh" / "mallscore.duckdb", models_dir=root / "models", lock_timeout=0.5)
    write_model(settings.models_dir, "v1")
    outside = root / "outside"
    write_model(outside, "evil")  # a valid, sealed model: only its location is wrong
    os.symlink(outside / "default" / "evil", settings.models_dir / "default" / "evil")
    os.symlink(outside / "default", settings.models_dir / "linked-spec")
    return settings, outside


ESCAPES = ["..", "../../etc/passwd", "/etc/passwd", "evil", "linked-spec"]


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.mark.parametrize("name", ESCAPES)
def test_names_that_escape_the_models_folder_are_refused_by_every_command(escape_setup, name: str) -> None:
    settings, outside = escape_setup
    champion = settings.models_dir / "default" / "CHAMPION"
    models_before, outside_before = _tree(settings.models_dir), _tree(outside)
    commands = [
        ["score", "--model", name],
        ["models", "show", name],
        ["models", "promote", name],
        ["export-sql", "--model", name],
        ["export-sql", "--spec", name],
        ["train", "--spec", name],
    ]
    for args in commands:
        done = run_cli(settings, *args)
        assert done.returncode in (2, 78), (args, done.stdout, done.stderr)
        assert done.stdout == "" and len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr, (
            args,
            done.stderr,
        )
    # the champion pointer is a name too: a tampered CHAMPION file is refused by score and rescore
    champion.write_text(name + "\n")
    try:
        for args in (["score"], ["rescore", "1"]):
            done = run_cli(settings, *args)
            assert done.returncode == 78 and len(done.stderr.splitlines()) == 1, (args, done.stderr)
    finally:
        champion.write_text("v1\n")
    assert _tree(settings.models_dir) == models_before and _tree(outside) == outside_before
    assert not settings.warehouse.exists()  # refused before the warehouse was even opened
