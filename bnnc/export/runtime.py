"""Running an ONNX model: ONNX Runtime sessions set up for fair timing, and the reference runtime."""

from __future__ import annotations

from typing import Any

import numpy as np


def ort_session(model: bytes, *, threads: int | None = None, spinning: bool = False) -> Any:
    """An ONNX Runtime CPU session for ``model`` (serialized bytes).

    Intra-op spinning is off by default: when several sessions are timed in turn, idle sessions'
    spinning threads would otherwise steal the cores from the one being measured.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def run_ort(session: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The first output of ``session`` on ``x``, in batches."""
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + batch_size]})[0] for i in range(0, len(x), batch_size)])


def run_reference(model: bytes, x: np.ndarray) -> np.ndarray:
    """The first output from ``onnx.reference.ReferenceEvaluator``: a second, independent runtime."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    proto = onnx.load_from_string(model)
    evaluator = ReferenceEvaluator(proto)
    return np.asarray(evaluator.run(None, {proto.graph.input[0].name: x})[0])


def latency_ms(session: Any, x: np.ndarray, *, repeats: int = 50, warmup: int = 5,
               min_seconds: float = 0.0) -> list[float]:
    """Wall-clock milliseconds of ``repeats`` runs on ``x`` (after ``warmup`` untimed runs).

    Runs continue past ``repeats`` until ``min_seconds`` have been spent, so fast models get
    enough samples for a stable median.
    """
    import time

    name = session.get_inputs()[0].name
    feed = {name: x}
    for _ in range(warmup):
        session.run(None, feed)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return times
