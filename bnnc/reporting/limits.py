"""Limits a CI pipeline gates a report on, and the checks they make of the measured figures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bnnc.errors import BnncError


@dataclass(frozen=True)
class Limits:
    """Limits a CI pipeline gates on; None means not checked.

    ``max_accuracy_drop`` in percentage points (FP32 - bnnc ONNX), ``min_compression`` as FP32
    ONNX bytes / bnnc ONNX bytes, ``min_speedup`` as FP32 / bnnc ORT latency at every measured
    batch size, ``max_parity_mismatch`` as the share of samples whose prediction differs between
    the bnnc ONNX model and the PyTorch binarized model; ``min_openvino_speedup`` as FP32 (ORT) / bnnc
    OpenVINO IR latency at every measured batch size, for a pipeline that deploys the IR.
    """

    max_accuracy_drop: float | None = None
    min_compression: float | None = None
    min_speedup: float | None = None
    max_parity_mismatch: float | None = None
    min_openvino_speedup: float | None = None

    def require_openvino(self, openvino: bool | None, available: bool) -> None:
        """Refuse, before anything is measured, a gate on the OpenVINO IR that can't be measured."""
        if self.min_openvino_speedup is None:
            return
        if openvino is False:
            raise BnncError("--min-openvino-speedup (config: min_openvino_speedup) gates on the OpenVINO IR, "
                            "which --no-openvino leaves out", "drop one of them")
        if not available:
            raise BnncError("--min-openvino-speedup (config: min_openvino_speedup) needs the openvino package",
                            "pip install 'bnnc[openvino]'")


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None  # None: not measured (the model's OpenVINO IR failed to export), which fails
    limit: float
    op: str  # "<=" or ">="

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "limit": self.limit, "op": self.op, "passed": self.passed}

    def describe(self) -> str:
        if self.value is None:
            return f"{self.name} not measured (must be {self.op} {self.limit:g}): see the report's notes"
        return f"{self.name} = {self.value:.4g} (must be {self.op} {self.limit:g})"


def check_limits(doc: dict[str, Any], limits: Limits) -> list[Check]:
    """The checks ``limits`` asks for, on the measured figures."""
    checks = []
    if limits.max_accuracy_drop is not None:
        checks.append(Check("accuracy_drop_pt", doc["accuracy"]["drop_pt"], limits.max_accuracy_drop, "<="))
    if limits.min_compression is not None:
        checks.append(Check("compression_vs_fp32", doc["size"]["compression_vs_fp32"], limits.min_compression, ">="))
    if limits.min_speedup is not None:
        worst = min(b["speedup_vs_fp32"] for b in doc["latency"]["by_batch"].values())
        checks.append(Check("speedup_vs_fp32", worst, limits.min_speedup, ">="))
    if limits.max_parity_mismatch is not None:
        checks.append(Check("parity_mismatch", 1 - doc["accuracy"]["onnx_torch_agreement"],
                            limits.max_parity_mismatch, "<="))
    if limits.min_openvino_speedup is not None:
        rows = doc["latency"]["by_batch"].values()
        measured = [b["openvino_speedup_vs_fp32"] for b in rows if "openvino_speedup_vs_fp32" in b]
        checks.append(Check("openvino_speedup_vs_fp32", min(measured) if len(measured) == len(rows) else None,
                            limits.min_openvino_speedup, ">="))
    return checks
