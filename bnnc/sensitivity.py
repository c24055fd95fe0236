"""Which layers can take binarizing, measured; and a plan that fits a size or accuracy budget.

A layer's sensitivity is the accuracy lost when it *alone* is binarized (as the default plan
would: binary weights, and binary inputs unless it is the first layer), thresholds and
BatchNorm statistics calibrated on training batches, measured on a few validation batches.
The automatic plan binarizes layers least-sensitive first — each addition measured on the whole
plan so far, since drops don't simply add — and keeps the rest FP32, until the model is small
enough (``target_bytes``) without losing more than ``max_accuracy_drop``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from bnnc.calibrate import calibrate_on
from bnnc.data import DataSplits
from bnnc.errors import PlanError
from bnnc.evaluation import evaluate
from bnnc.events import MeasuringLayer, OnEvent
from bnnc.planning import Plan, Precision
from bnnc.summary import model_bytes
from bnnc.swap import ConvertOptions, convert


@dataclass(frozen=True)
class LayerSensitivity:
    """One layer binarized alone."""

    name: str
    precision: Precision        # what the default plan makes it
    params: int
    bytes_saved: int            # FP32 weight bytes minus 1-bit bytes
    accuracy: float             # with this layer alone binarized
    accuracy_drop: float        # FP32 accuracy minus ``accuracy`` (fraction, not points)


@dataclass(frozen=True)
class Sensitivity:
    fp32_accuracy: float
    samples: int
    layers: tuple[LayerSensitivity, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"fp32_accuracy": self.fp32_accuracy, "samples": self.samples,
                "layers": [{**dataclasses.asdict(s), "precision": s.precision.value} for s in self.layers]}


@dataclass(frozen=True)
class Budget:
    """What the automatic plan must meet; at least one of the two."""

    target_bytes: int | None = None         # model bytes after conversion, at most
    max_accuracy_drop: float | None = None  # FP32 accuracy minus binarized, at most (fraction)

    def __post_init__(self) -> None:
        if self.target_bytes is None and self.max_accuracy_drop is None:
            raise PlanError("an automatic plan needs a target size or a maximum accuracy drop")
        if self.target_bytes is not None and self.target_bytes <= 0:
            raise PlanError(f"the target size must be positive, got {self.target_bytes}")
        if self.max_accuracy_drop is not None and not 0 <= self.max_accuracy_drop <= 1:
            raise PlanError(f"the maximum accuracy drop must be between 0 and 100 points, got "
                            f"{self.max_accuracy_drop * 100:g}")


@dataclass(frozen=True)
class AutoPlan:
    """The chosen plan and what it measured."""

    plan: Plan
    bytes: int
    accuracy: float
    accuracy_drop: float
    kept: tuple[str, ...]       # layers the default plan binarizes that stay FP32

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "accuracy": self.accuracy, "accuracy_drop": self.accuracy_drop,
                "kept": list(self.kept)}


class _Probe:
    """Converts a model under a plan, calibrates it and measures accuracy, on fixed batches."""

    def __init__(self, model: nn.Module, splits: DataSplits, options: ConvertOptions, samples: int,
                 calibration_batches: int) -> None:
        self.model, self.options = model, options
        x, y = splits.val.tensors
        self.val = TensorDataset(x[:samples], y[:samples])
        self.train = splits.train
        self.calibration_batches = calibration_batches

    def accuracy(self, net: nn.Module) -> float:
        return evaluate(net, self.val, torch.device("cpu"))[0]

    def binarized(self, plan: Plan) -> nn.Module:
        net = convert(self.model, plan, self.options)
        calibrate_on(net, self.train, self.calibration_batches, batchnorm=True)
        return net


def _only(plan: Plan, binarized: set[str], reasons: dict[str, str] | None = None) -> Plan:
    """``plan`` with every layer not in ``binarized`` set to FP32."""
    layers = tuple(
        layer if layer.name in binarized or not layer.precision.binary_weights
        else dataclasses.replace(layer, precision=Precision.FP32,
                                 reason=(reasons or {}).get(layer.name, "kept FP32 by the automatic plan"))
        for layer in plan.layers
    )
    return dataclasses.replace(plan, layers=layers)


def _candidates(plan: Plan) -> list[str]:
    return [layer.name for layer in plan.layers if layer.precision.binary_weights]


def sensitivity(
    model: nn.Module, splits: DataSplits, plan: Plan, options: ConvertOptions | None = None, *,
    samples: int = 1024, calibration_batches: int = 4, on_event: OnEvent | None = None,
) -> Sensitivity:
    """Accuracy drop of each layer ``plan`` binarizes, binarized alone, on ``samples`` validation samples."""
    probe = _Probe(model.eval(), splits, options or ConvertOptions(), samples, calibration_batches)
    fp32 = probe.accuracy(model)
    rows = []
    for name in _candidates(plan):
        if on_event:
            on_event(MeasuringLayer(name))
        layer = plan[name]
        acc = probe.accuracy(probe.binarized(_only(plan, {name})))
        rows.append(LayerSensitivity(name, layer.precision, layer.params, layer.params * 4 - (layer.params + 7) // 8,
                                     acc, fp32 - acc))
    return Sensitivity(fp32, len(probe.val), tuple(rows))


def auto_plan(
    model: nn.Module, splits: DataSplits, plan: Plan, budget: Budget, options: ConvertOptions | None = None, *,
    measured: Sensitivity | None = None, samples: int = 1024, calibration_batches: int = 4,
    on_event: OnEvent | None = None,
) -> AutoPlan:
    """The plan that binarizes the least-sensitive layers of ``plan`` until ``budget`` is met.

    Layers are tried least-sensitive first (ties: the larger first); a layer whose addition
    would break ``max_accuracy_drop`` is kept FP32 and the next is tried; once ``target_bytes`` is
    met no more are binarized. A budget that can't be met is a ``PlanError`` saying how close the
    best plan came.
    """
    options = options or ConvertOptions()
    measured = measured or sensitivity(model, splits, plan, options, samples=samples,
                                       calibration_batches=calibration_batches, on_event=on_event)
    probe = _Probe(model.eval(), splits, options, samples, calibration_batches)
    order = sorted(measured.layers, key=lambda s: (s.accuracy_drop, -s.params))
    chosen: set[str] = set()
    reasons = {s.name: f"kept FP32: binarized alone it costs {s.accuracy_drop * 100:.2f} pt" for s in measured.layers}
    size = model_bytes(model)
    accuracy = measured.fp32_accuracy
    for s in order:
        if budget.target_bytes is not None and size <= budget.target_bytes:
            break
        if on_event:
            on_event(MeasuringLayer(s.name))
        trial = _only(plan, chosen | {s.name})
        net = probe.binarized(trial)
        acc = probe.accuracy(net)
        if budget.max_accuracy_drop is not None and measured.fp32_accuracy - acc > budget.max_accuracy_drop:
            reasons[s.name] = (f"kept FP32: binarizing it too would cost {(measured.fp32_accuracy - acc) * 100:.2f} pt "
                               f"(budget {budget.max_accuracy_drop * 100:g})")
            continue
        chosen.add(s.name)
        size, accuracy = model_bytes(net), acc
    final = _only(plan, chosen, reasons)
    if budget.target_bytes is not None and size > budget.target_bytes:
        raise PlanError(
            f"no plan reaches {budget.target_bytes:,} bytes"
            + (f" within a {budget.max_accuracy_drop * 100:g} pt accuracy drop" if budget.max_accuracy_drop is not None
               else "")
            + f"; the closest is {size:,} bytes at {(measured.fp32_accuracy - accuracy) * 100:.2f} pt",
            "raise --target-size or --max-accuracy-drop, or change the plan's first/last layer precision")
    return AutoPlan(final, size, accuracy, measured.fp32_accuracy - accuracy,
                    tuple(n for n in _candidates(plan) if n not in chosen))
