"""Measuring what users compare: bytes on disk, accuracy, and ONNX Runtime latency, side by side.

Nothing here prints; :mod:`bnnc.reporting` and the benchmarks turn the figures into tables.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from bnnc.classes import predictions
from bnnc.export.runtime import latency_ms, ort_session, run_ort


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ORT's quantizer logs its pre-processing advice on the root logger: silenced while it runs, then the
    caller's logging configuration is put back as it was."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def int8_dynamic(fp32_onnx: bytes) -> bytes:
    """ONNX Runtime's dynamic int8 quantization (int8 weights, activations quantized at run time) of an
    FP32 ONNX model. Fast for MatMul-only models; it turns convolutions into ``ConvInteger``, 5-10x slower
    than FP32 on x86, which is why no one deploys a CNN with it (see :func:`int8_static`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_quantizer(), tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
        src.write_bytes(fp32_onnx)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        return dst.read_bytes()


CALIBRATION_SAMPLES = 512
"""Training samples :func:`int8_static` calibrates on (ORT's examples use a few hundred)."""

INT8_STATIC = "ORT static int8: QDQ, per-channel int8 weights, uint8 activations calibrated (MinMax)"


def needs_reduce_range(cpu_flags: set[str] | None = None) -> bool:
    """Whether ORT's int8 weights should keep to 7 bits on this CPU (``quantize_static(reduce_range=True)``, ORT's
    advice for x86 without VNNI): there its uint8 x int8 kernels add pairs of products in saturating 16-bit lanes,
    and full-range weights overflow them — the sample VGG's static int8 fell from 92.0% to 86.1% on an AVX2-only
    CPU, 91.95% with 7 bits. ``cpu_flags``: the CPU's flags (default: read from /proc/cpuinfo; an x86 CPU whose
    flags can't be read counts as having no VNNI, which only costs a little precision)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    if cpu_flags is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            return True
        cpu_flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines()
                              if line.startswith("flags")), []))
    return not cpu_flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


def int8_static(fp32_onnx: bytes, calibration: np.ndarray, batch_size: int = 32) -> bytes:
    """ONNX Runtime's static int8 quantization, as users deploy a CNN with it: ``quant_pre_process``
    (BatchNorm folded into the convs, shapes inferred), then ``quantize_static`` in QDQ format with
    per-channel int8 weights (7-bit where :func:`needs_reduce_range`) and uint8 activations whose ranges are
    calibrated on ``calibration`` (inputs from the training split). ORT then runs
    ``QLinearConv``/``QGemm``/``QLinearMatMul``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.batches = iter([{name: calibration[i:i + batch_size]} for i in range(0, len(calibration), batch_size)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with _quiet_quantizer(), tempfile.TemporaryDirectory() as d:
        src, pre, dst = Path(d) / "fp32.onnx", Path(d) / "pre.onnx", Path(d) / "int8.onnx"
        src.write_bytes(fp32_onnx)
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - pre-processing is an optimization; quantize the model as it is
            pre = src
        name = onnx.load(str(pre), load_external_data=False).graph.input[0].name
        quantize_static(pre, dst, Reader(name), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=needs_reduce_range(), activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        return dst.read_bytes()


def has_convolutions(fp32_onnx: bytes) -> bool:
    """Whether the model convolves: ORT's dynamic int8 only competes on models that don't."""
    return any(n.op_type in ("Conv", "ConvTranspose") for n in onnx.load_from_string(fp32_onnx).graph.node)


def onnx_accuracy(model: bytes | Any, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Top-1 accuracy of an ONNX model in ONNX Runtime (or of a session: an OpenVINO one), and its predictions."""
    pred = predictions(run_ort(ort_session(model) if isinstance(model, bytes) else model, x))
    return float((pred == y).mean()), pred


@torch.no_grad()
def torch_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512
                   ) -> tuple[float, np.ndarray]:
    """Top-1 accuracy of a PyTorch model (eval mode, CPU), and its predictions."""
    model = model.eval()
    pred = torch.cat([predictions(model(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]).numpy()
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
              repeats: int = 40) -> dict[str, Latency]:
    """Time every model on its input, in turn, round after round, so that they share the machine fairly.

    Each ONNX model gets a session with ``threads`` intra-op threads and spinning off (see
    :func:`ort_session`); a model given as a session (an OpenVINO one) is timed as it is.
    """
    sessions = {k: ort_session(v, threads=threads) if isinstance(v, bytes) else v for k, v in models.items()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            times[k] += latency_ms(s, inputs[k], repeats=repeats, warmup=3)
    out = {}
    for k, t in times.items():
        q = statistics.quantiles(t, n=4) if len(t) > 1 else [t[0]] * 3
        out[k] = Latency(statistics.median(t), q[0], q[2], len(t))
    return out
