"""Measuring what users compare: bytes on disk, accuracy, and ONNX Runtime latency, side by side.

Nothing here prints; :mod:`bnnc.reporting` and the benchmarks turn the figures into tables.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bnnc.export.runtime import latency_ms, ort_session, run_ort


def int8_dynamic(fp32_onnx: bytes) -> bytes:
    """ONNX Runtime's own dynamic int8 quantization (int8 weights) of an FP32 ONNX model."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # its pre-processing advice
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
        src.write_bytes(fp32_onnx)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        return dst.read_bytes()


def onnx_accuracy(model: bytes | Any, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Top-1 accuracy of an ONNX model in ONNX Runtime (or of a session: an OpenVINO one), and its predictions."""
    pred = run_ort(ort_session(model) if isinstance(model, bytes) else model, x).argmax(1)
    return float((pred == y).mean()), pred


@torch.no_grad()
def torch_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> tuple[float, np.ndarray]:
    """Top-1 accuracy of a PyTorch model (eval mode, CPU), and its predictions."""
    model = model.eval()
    pred = torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]).numpy()
    return float((pred == y.numpy()).mean()), pred


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call: median and interquartile range of ``runs`` timed calls (warm-up excluded)."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    runs: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def latencies(models: dict[str, bytes | Any], inputs: dict[str, np.ndarray], *, threads: int, rounds: int = 8,
              repeats: int = 40, on_round: Callable[[int], None] | None = None) -> dict[str, Latency]:
    """Time every model on its input, in turn, round after round, so that they share the machine fairly.

    Each ONNX model gets a session with ``threads`` intra-op threads and spinning off (see
    :func:`ort_session`); a model given as a session (an OpenVINO one) is timed as it is.
    """
    sessions = {k: ort_session(v, threads=threads) if isinstance(v, bytes) else v for k, v in models.items()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for r in range(rounds):
        for k, s in sessions.items():
            times[k] += latency_ms(s, inputs[k], repeats=repeats, warmup=3)
        if on_round:
            on_round(r)
    out = {}
    for k, t in times.items():
        q = statistics.quantiles(t, n=4) if len(t) > 1 else [t[0]] * 3
        out[k] = Latency(statistics.median(t), q[0], q[2], len(t))
    return out
