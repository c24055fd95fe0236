"""The precision plan: for every Linear/Conv layer, ``fp32``, ``weights`` or ``binary``, and why.

"First" and "last" are read off the model's graph (``torch.fx``): the first layers are those
the model's input reaches without passing another Linear/Conv (every branch of a split stem),
the last those whose output reaches the model's output so (every head). A model ``torch.fx``
can't trace falls back to running a sample input and taking the first and last layers to
execute; the plan says so. Execution order and MACs always come from that sample run. Defaults follow the
paper: the first layer keeps a real-valued input with binary weights, hidden layers are fully
binary, the last layer stays FP32. Depthwise convolutions and layers too small to matter stay
FP32. Overrides are globs on qualified module names; a glob that matches nothing is an error
(a typo would otherwise silently binarize the layer the user meant to keep).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from torch import nn

from bnnc import defaults
from bnnc.errors import PlanError, first_line
from bnnc.tracing import GraphFacts, WeightLayer, candidate_layers, graph_facts, refuse_token_input, run_sample

SUPPORTED_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)
"""Layer types with a binary counterpart (exact types: a subclass may override ``forward``)."""


class Precision(str, Enum):
    """How a layer computes after conversion."""

    FP32 = "fp32"        # untouched
    WEIGHTS = "weights"  # binary weights, real-valued input (the paper's first layer)
    BINARY = "binary"    # binary weights and binary input (XNOR-popcount)
    INT8 = "int8"        # int8 weights per output channel, uint8 input with a calibrated scale

    @property
    def bits(self) -> int:
        """Bits stored per weight."""
        return {"fp32": 32, "int8": 8}.get(self.value, 1)

    @property
    def binary_weights(self) -> bool:
        """Whether the layer's weights are +-1 (stored at 1 bit)."""
        return self in (Precision.WEIGHTS, Precision.BINARY)


@dataclass(frozen=True)
class LayerPlan:
    """One Linear/Conv layer: what it is, what it costs, and what it becomes."""

    name: str
    kind: str                       # module class name, e.g. "Conv2d"
    weight_shape: tuple[int, ...]
    params: int                     # weight elements
    macs: int                       # multiply-accumulates per sample on the sample input
    order: int | None               # execution order; None when the sample input didn't reach it
    precision: Precision
    reason: str
    inputs: tuple[str, ...] = ()    # the layers (or "input") whose outputs reach it, per the graph

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "weight_shape": list(self.weight_shape),
            "params": self.params, "macs": self.macs, "order": self.order,
            "precision": self.precision.value, "reason": self.reason, "inputs": list(self.inputs),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerPlan:
        return cls(
            name=str(d["name"]), kind=str(d["kind"]), weight_shape=tuple(int(s) for s in d["weight_shape"]),
            params=int(d["params"]), macs=int(d["macs"]),
            order=None if d["order"] is None else int(d["order"]),
            precision=Precision(d["precision"]), reason=str(d["reason"]),
            inputs=tuple(str(n) for n in d.get("inputs", ())),
        )


@dataclass(frozen=True)
class PlanTotals:
    """What a plan binarizes, in weights and in multiply-accumulates (MACs)."""

    params: int                     # weights of the planned layers
    binary_weights: int             # stored at 1 bit
    kept_weights: int               # left FP32
    macs: int
    binary_mac_share: float         # MACs with binary weights and binary inputs (XNOR-popcount)
    binary_weight_mac_share: float  # MACs with binary weights (binary or real inputs)


@dataclass(frozen=True)
class Plan:
    """Per-layer precisions, in execution order (layers the sample input didn't reach last)."""

    layers: tuple[LayerPlan, ...]
    input_shape: tuple[int, ...]    # per-sample input shape the plan was traced with
    input_shape_inferred: bool = False
    fallback: str | None = None     # why first/last came from execution order, not the graph
    warnings: tuple[str, ...] = ()  # what in the plan may keep the model from recovering

    def __getitem__(self, name: str) -> LayerPlan:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def precisions(self) -> dict[str, Precision]:
        return {layer.name: layer.precision for layer in self.layers}

    def totals(self) -> PlanTotals:
        """Weights and multiply-accumulates by precision, over the planned layers."""
        macs = sum(layer.macs for layer in self.layers)
        return PlanTotals(
            params=sum(layer.params for layer in self.layers),
            binary_weights=sum(layer.params for layer in self.layers if layer.precision.binary_weights),
            kept_weights=sum(layer.params for layer in self.layers if layer.precision is Precision.FP32),
            macs=macs,
            binary_mac_share=sum(la.macs for la in self.layers if la.precision is Precision.BINARY) / (macs or 1),
            binary_weight_mac_share=sum(la.macs for la in self.layers if la.precision.binary_weights) / (macs or 1),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "input_shape_inferred": self.input_shape_inferred,
            "fallback": self.fallback,
            "warnings": list(self.warnings),
            "layers": [layer.to_dict() for layer in self.layers],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        try:
            return cls(
                layers=tuple(LayerPlan.from_dict(x) for x in d["layers"]),
                input_shape=tuple(int(s) for s in d["input_shape"]),
                input_shape_inferred=bool(d.get("input_shape_inferred", False)),
                fallback=None if d.get("fallback") is None else str(d["fallback"]),
                warnings=tuple(str(w) for w in d.get("warnings", ())),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise PlanError(f"the stored precision plan is malformed ({e!r})",
                            "re-run `bnnc convert` on the FP32 model") from None


@dataclass(frozen=True)
class PlanRules:
    """What the user asked for; ``first``/``last`` ``None`` mean the defaults (weights / fp32)."""

    first: Precision | None = None
    last: Precision | None = None
    keep: tuple[str, ...] = ()
    binary: tuple[str, ...] = ()
    weights: tuple[str, ...] = ()
    int8: tuple[str, ...] = ()
    min_params: int = defaults.MIN_PARAMS
    min_fan_in: int = defaults.MIN_FAN_IN

    def __post_init__(self) -> None:
        if self.min_params < 0:
            raise PlanError(f"min_params must be >= 0, got {self.min_params}")
        if self.min_fan_in < 0:
            raise PlanError(f"min_fan_in must be >= 0, got {self.min_fan_in}")
        for f in ("first", "last"):
            v = getattr(self, f)
            if v is not None and not isinstance(v, Precision):
                try:
                    object.__setattr__(self, f, Precision(v))
                except ValueError:
                    raise PlanError(f"--{f} must be one of fp32, weights, binary, int8; got {v!r}") from None


def _matches(name: str, pattern: str) -> bool:
    """A glob matches a layer by its name, or any layer inside the module it names."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + ".*")


def _default(module: WeightLayer, params: int, position: str, role: str, rules: PlanRules) -> tuple[Precision, str]:
    """The default precision of a supported layer at ``position`` (first / last / hidden / unreached) with a
    ``role`` the graph shows (``gate``: squeeze-excitation, ``attention``: a projection around attention)."""
    if position == "unreached":
        return Precision.FP32, "not reached by the sample input"
    if position == "last":
        if rules.last is not None:
            return rules.last, "last layer (--last)"
        return Precision.FP32, "last layer: its outputs are the logits"
    if position == "first" and rules.first is not None:
        return rules.first, "first layer (--first)"
    groups = getattr(module, "groups", 1)
    if groups > 1 and groups == getattr(module, "in_channels", 0):
        return Precision.FP32, "depthwise conv: binarizing costs accuracy, saves little"
    if role == "gate":
        return Precision.FP32, ("squeeze-excitation: a gate computed once per sample (negligible MACs) from "
                                "pooled features; binarized, it costs accuracy")
    if role == "attention":
        return Precision.FP32, ("attention projection (q/k/v or output): binarized, attention loses most "
                                "of its accuracy")
    if params < rules.min_params:
        return Precision.FP32, f"small: {params} weights < {rules.min_params}"
    if position == "first":
        return Precision.WEIGHTS, "first layer: real-valued input, binary weights"
    fan_in = module.weight[0].numel()
    if fan_in < rules.min_fan_in:  # a binary input: the output is a sum of fan_in products of +-1
        return Precision.FP32, f"narrow: each output sums {fan_in} binary products < {rules.min_fan_in}"
    return Precision.BINARY, "hidden layer"


def _override(name: str, rules: PlanRules) -> tuple[Precision, str] | None:
    hits = [
        (precision, flag, pattern)
        for precision, flag, patterns in (
            (Precision.FP32, "--keep", rules.keep),
            (Precision.WEIGHTS, "--weights", rules.weights),
            (Precision.BINARY, "--binary", rules.binary),
            (Precision.INT8, "--int8", rules.int8),
        )
        for pattern in patterns
        if _matches(name, pattern)
    ]
    if len({h[0] for h in hits}) > 1:
        asked = ", ".join(f"{flag} {pattern!r}" for _, flag, pattern in hits)
        raise PlanError(f"layer {name!r} is matched by conflicting overrides: {asked}",
                        "make the globs select disjoint layers")
    if not hits:
        return None
    precision, flag, pattern = hits[0]
    return precision, f"{flag} {pattern}"


def _check_globs(names: list[str], rules: PlanRules) -> None:
    for flag, patterns in (("--keep", rules.keep), ("--weights", rules.weights), ("--binary", rules.binary),
                           ("--int8", rules.int8)):
        for pattern in patterns:
            if not any(_matches(n, pattern) for n in names):
                shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
                raise PlanError(f"{flag} {pattern!r} matches no Linear/Conv layer",
                                f"layer names are: {shown}")


def plan(
    model: nn.Module,
    rules: PlanRules | None = None,
    *,
    input_shape: Sequence[int] | None = None,
) -> Plan:
    """Decide each Linear/Conv layer's precision by running a sample input through ``model``.

    ``input_shape`` is the per-sample shape (e.g. ``(1, 28, 28)``); without it bnnc probes a few
    common shapes from the first layer and records that it did. ``model`` is not modified.
    """
    rules = rules or PlanRules()
    refuse_token_input(model)
    candidates = candidate_layers(model)
    if not candidates:
        raise PlanError("the model has no Linear or Conv layer, so there is nothing to binarize",
                        "bnnc binarizes nn.Linear, nn.Conv1d and nn.Conv2d layers")
    trace, shape, inferred = run_sample(model, candidates, input_shape)
    names = [n for n, _ in candidates]
    _check_globs(names, rules)

    executed = trace.order
    modules = dict(candidates)
    once = {n for n in trace.macs if trace.macs[n] == modules[n].weight.numel()}  # applied to one vector
    try:
        facts = graph_facts(model, set(trace.macs), once)
        fallback = None
    except Exception as e:  # noqa: BLE001 - data-dependent control flow, untraceable calls, ...
        fallback = f"torch.fx can't trace the model ({first_line(e, 140)})"
        supported_executed = [n for n in executed if type(modules[n]) in SUPPORTED_TYPES]
        facts = GraphFacts(set(supported_executed[:1]), set(executed[-1:]), {}, set(), set())  # last: the logits

    ordered = executed + [n for n in names if n not in trace.macs]
    out: list[LayerPlan] = []
    risky: list[str] = []
    depthwise = {n for n, m in candidates if 1 < getattr(m, "groups", 1) == getattr(m, "in_channels", 0)}
    for name in ordered:
        module = modules[name]
        params = module.weight.numel()
        supported = type(module) in SUPPORTED_TYPES
        position = (
            "unreached" if name not in trace.macs
            else "last" if name in facts.lasts
            else "first" if name in facts.firsts
            else "hidden"
        )
        role = "gate" if name in facts.gates else "attention" if name in facts.attention else ""
        if supported:
            default = _default(module, params, position, role, rules)
            precision, reason = _override(name, rules) or default
            if precision is not Precision.FP32 and default[0] is Precision.FP32 and default[1].startswith(_RISKY):
                risky.append(f"{name} ({default[1].split(':')[0]})")
        else:
            if (o := _override(name, rules)) is not None and o[0] is not Precision.FP32:
                raise PlanError(f"{o[1]} selects {name!r}, a {type(module).__name__}, which bnnc can't binarize",
                                "bnnc binarizes exactly nn.Linear, nn.Conv1d and nn.Conv2d")
            precision, reason = Precision.FP32, f"no binary version of {type(module).__name__}"
        out.append(LayerPlan(
            name=name, kind=type(module).__name__, weight_shape=tuple(module.weight.shape),
            params=params, macs=trace.macs.get(name, 0),
            order=executed.index(name) if name in trace.macs else None,
            precision=precision, reason=reason, inputs=facts.feeds.get(name, ()),
        ))
    return Plan(layers=tuple(out), input_shape=shape, input_shape_inferred=inferred, fallback=fallback,
                warnings=_warnings(out, risky, depthwise))


def _some(names: list[str]) -> str:
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


_RISKY = ("depthwise", "squeeze-excitation", "attention", "narrow")
"""Default reasons for keeping a layer FP32 that were measured to decide whether a model recovers."""


def _warnings(layers: list[LayerPlan], risky: list[str], depthwise: set[str]) -> tuple[str, ...]:
    """One line each for what in the plan may keep the model from recovering once binarized."""
    warnings = []
    if risky:
        warnings.append(f"{len(risky)} layer{'s' if len(risky) > 1 else ''} binarized by an override that the "
                        f"default plan keeps FP32 because binarized they rarely recover: {_some(risky)}")
    after_depthwise = [layer.name for layer in layers
                       if layer.precision is Precision.BINARY and depthwise & set(layer.inputs)]
    if after_depthwise:  # measured: benchmarks/architectures.py, README "Architectures"
        warnings.append(f"{len(after_depthwise)} binarized conv{'s' if len(after_depthwise) > 1 else ''} "
                        f"read{'' if len(after_depthwise) > 1 else 's'} a depthwise conv's output "
                        f"({_some(after_depthwise)}): inverted-residual nets binarized so recover slowly "
                        "(torchvision MobileNet-V2: 81% FP32, 31% after 2 epochs; 78% with these kept FP32) "
                        "- fine-tune longer, or --keep them")
    if not any(layer.precision is not Precision.FP32 for layer in layers):
        warnings.append("no layer is binarized: the converted model is the FP32 one (see each layer's reason)")
    return tuple(warnings)

