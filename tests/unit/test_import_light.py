"""The scoring path imports the registry and the specs: neither may pull in scikit-learn and friends."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("sklearn", "skl2onnx", "matplotlib", "onnx", "onnxruntime", "pandas")


def test_registry_and_specs_import_no_heavy_library():
    code = f"import sys, mallscore.registry, mallscore.specs; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_cli_import_does_not_load_training_libraries():
    code = "import sys, mallscore.cli; print(','.join(m for m in ('sklearn', 'skl2onnx', 'matplotlib') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
