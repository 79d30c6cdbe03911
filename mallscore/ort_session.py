"""One way to open an onnxruntime session on the scoring path (the classifier and the groups model)."""

from __future__ import annotations

from typing import Any

from mallscore.errors import ConfigError


def open_session(data: bytes, where: str, *, threads: int | None = None) -> Any:
    """An onnxruntime CPU session on ``data``; ConfigError (78) naming ``where`` when onnxruntime refuses it.

    Idle pool threads never spin between runs: spinning took the cores DuckDB's insert and the stream's own
    work need (10M new customers: 4.9 s with spinning, 4.2 s without; bench/bench_scoring.py).
    ``threads`` caps the pool (None: onnxruntime's default, one per core).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ConfigError(f"{where}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None
