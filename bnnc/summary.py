"""What a conversion costs and saves: per-layer precision and totals, computed, never printed here.

The binarized size is what the export stores (:func:`bnnc.export.payload_bytes`: 1-bit weights,
thresholds where BatchNorm, scale and activation fold into them, FP32 parameters of real-valued
layers), predicted by exporting in memory — so ``convert``, ``report`` and ``export`` give one figure.
:func:`model_bytes` is the quick estimate used where a model can't be exported, and to rank plans:
floating-point parameters and buffers (BatchNorm statistics included) at their own width, each
binarized weight at 1 bit, nothing folded (so it is above the export's figure). Integer
bookkeeping buffers (``num_batches_tracked``) are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bnnc.int8 import int8_layers
from bnnc.layers import binary_layers
from bnnc.planning import Plan


def _float_tensors(model: nn.Module) -> dict[str, Any]:
    tensors: dict[str, torch.Tensor] = dict(model.named_parameters())
    tensors.update((n, b) for n, b in model.named_buffers() if b.is_floating_point())
    return tensors


def model_bytes(model: nn.Module) -> int:
    """Bytes of ``model``'s floating-point tensors, each binary layer's weight at 1 bit, each int8 layer's at 8."""
    packed = {f"{name}.weight" for name, _ in binary_layers(model)}
    bytes_ = {f"{name}.weight" for name, _ in int8_layers(model)}
    total = 0
    for name, t in _float_tensors(model).items():
        bits = 1 if name in packed else 8 if name in bytes_ else 8 * t.element_size()
        total += (t.numel() * bits + 7) // 8
    return total


@dataclass(frozen=True)
class ConversionSummary:
    """Totals of a conversion; the per-layer rows are the plan's layers."""

    plan: Plan
    fp32_bytes: int
    binarized_bytes: int         # what the export stores (or, if it couldn't export, model_bytes)
    binary_weights: int          # weights stored at 1 bit
    kept_weights: int            # Linear/Conv weights left FP32
    binary_mac_share: float      # MACs with binary weights and binary inputs (XNOR-popcount)
    binary_weight_mac_share: float  # MACs with binary weights (binary or real inputs)
    size_from_export: bool = True   # False: the export failed, binarized_bytes is model_bytes's estimate

    @property
    def compression(self) -> float:
        return self.fp32_bytes / self.binarized_bytes if self.binarized_bytes else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [
                {**layer.to_dict(), "bits_per_weight": layer.precision.bits}
                for layer in self.plan.layers
            ],
            "input_shape": list(self.plan.input_shape),
            "input_shape_inferred": self.plan.input_shape_inferred,
            "totals": {
                "fp32_bytes": self.fp32_bytes,
                "binarized_bytes": self.binarized_bytes,
                "compression": round(self.compression, 3),
                "binary_weights": self.binary_weights,
                "kept_weights": self.kept_weights,
                "binary_mac_share": round(self.binary_mac_share, 4),
                "binary_weight_mac_share": round(self.binary_weight_mac_share, 4),
                "size_from_export": self.size_from_export,
            },
        }


def summarize(source: nn.Module, converted: nn.Module, plan: Plan, binarized_bytes: int | None = None
              ) -> ConversionSummary:
    """Compare the FP32 ``source`` with its ``converted`` copy under ``plan``; ``binarized_bytes`` is
    what its export stores (:func:`bnnc.export.predicted_payload`), else :func:`model_bytes` estimates it."""
    totals = plan.totals()
    return ConversionSummary(
        plan=plan,
        fp32_bytes=model_bytes(source),
        binarized_bytes=model_bytes(converted) if binarized_bytes is None else binarized_bytes,
        binary_weights=totals.binary_weights,
        kept_weights=totals.kept_weights,
        binary_mac_share=totals.binary_mac_share,
        binary_weight_mac_share=totals.binary_weight_mac_share,
        size_from_export=binarized_bytes is not None,
    )
