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
import inspect
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from bnnc.errors import PlanError

SUPPORTED_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)
"""Layer types with a binary counterpart (exact types: a subclass may override ``forward``)."""

DEFAULT_MIN_PARAMS = 1024
"""Hidden layers with fewer weights stay FP32: keeping them costs at most 4 KiB."""

DEFAULT_MIN_FAN_IN = 64
"""Hidden layers summing fewer inputs per output stay FP32: a sum of fewer than 64 +-1 products takes too few
values. Measured on small MobileNet-V2 / EfficientNet-B0 (Fashion-MNIST sample, 2 epochs): 48.7% ->
70.4% and 59.6% -> 76.3% with them kept. Ordinary convnets have none (a 3x3 conv on 8 channels sums 72)."""

_CONV_PROBE_SIDES = (28, 32, 64, 96, 128, 224)
_CONV1D_PROBE_LENGTHS = (16000, 1024, 256, 128, 64)


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
    min_params: int = DEFAULT_MIN_PARAMS
    min_fan_in: int = DEFAULT_MIN_FAN_IN

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


@dataclass
class _Trace:
    order: list[str] = field(default_factory=list)
    macs: dict[str, int] = field(default_factory=dict)


def _candidate_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every module that has weights like a Linear/Conv (supported or not), in registration order."""
    from torch.nn.modules.conv import _ConvNd

    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, _ConvNd)) and n]


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    """Multiply-accumulates of one call, per sample: output elements x fan-in."""
    per_sample = out.numel() // max(out.shape[0], 1) if out.dim() > 1 else out.numel()
    w = module.weight
    fan_in = w.shape[1] * math.prod(w.shape[2:]) if w.dim() > 2 else w.shape[-1]
    return int(per_sample * fan_in)


def _trace(model: nn.Module, example: torch.Tensor, layers: list[tuple[str, nn.Module]]) -> _Trace:
    trace = _Trace()

    def hook(name: str):
        def record(module: nn.Module, _inp: Any, out: Any) -> None:
            if name not in trace.macs:
                trace.order.append(name)
                trace.macs[name] = 0
            if isinstance(out, torch.Tensor):
                trace.macs[name] += _macs(module, out)
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in layers]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return trace


def fx_graph(model: nn.Module, tracer: fx.Tracer | None = None) -> fx.Graph:
    """The model's ``torch.fx`` graph with one input: every forward parameter after the first is bound to
    its default (a model's ``attn_mask=None``, ``is_causal=False`` are constants at inference, not inputs),
    and the guards and placeholders fx leaves for them are removed."""
    params = list(inspect.signature(model.forward).parameters.values())[1:]
    bound = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    graph = (tracer or fx.Tracer()).trace(model, concrete_args=bound or None)
    extra = [n for n in graph.nodes if n.op == "placeholder"][1:]
    for node in reversed(list(graph.nodes)):  # fx's guards on the bound values: node == value, _assert(...)
        if not node.users and (node in extra or node.op == "call_function" and _depends_only_on(node, extra)):
            graph.erase_node(node)
    return graph


def _depends_only_on(node: fx.Node, sources: list[fx.Node]) -> bool:
    """Whether every graph input of ``node``'s computation is one of ``sources`` (and there is one)."""
    inputs = node.all_input_nodes
    return bool(inputs) and all(n in sources or (n.op == "call_function" and _depends_only_on(n, sources))
                                for n in inputs)


_MULTIPLY = {operator.mul, operator.imul, torch.mul, "mul", "mul_"}
_ATTENTION = {F.scaled_dot_product_attention, torch.matmul, torch.bmm, operator.matmul, torch.einsum, F.softmax,
              torch.softmax, "matmul", "bmm", "softmax"}


def _is(node: fx.Node, ops: set[Any]) -> bool:
    return (node.op == "call_function" and node.target in ops) or (node.op == "call_method" and node.target in ops)


def _shape_of(node: fx.Node) -> bool:
    """A node that reads a tensor's shape (``x.shape``, ``x.size()``): no values flow through it."""
    return (node.op == "call_function" and node.target is getattr) or _is(node, {"size", "dim"})


@dataclass(frozen=True)
class _GraphFacts:
    """What the ``torch.fx`` graph says about the layers."""

    firsts: set[str]                   # reached from the input without passing another layer
    lasts: set[str]                    # reaching the output so
    feeds: dict[str, tuple[str, ...]]  # the layers (or "input") whose outputs reach each layer so
    gates: set[str]                    # squeeze-excitation: once per sample, output multiplies a feature map
    attention: set[str]                # feeding, or fed by, an attention product (q/k/v and output projections)


def _graph_facts(model: nn.Module, names: set[str], once: set[str]) -> _GraphFacts:
    """The layers in ``names`` the input reaches, and that reach the output, without passing another of
    them; what feeds each (two for a residual addition or a concatenation); and two roles read off the
    graph: squeeze-excitation layers (among ``once``, the layers applied once per sample, those whose
    output, through elementwise steps and other such layers, scales a tensor it doesn't derive from),
    and attention projections (those whose output reaches, or whose input comes from, a
    ``scaled_dot_product_attention``/``matmul``/``softmax`` of computed tensors before another layer).
    Raises whatever tracing raises."""
    graph = fx_graph(model)
    is_layer = {n: n.op == "call_module" and str(n.target) in names for n in graph.nodes}

    def reach(starts: list[fx.Node], step: Any) -> set[str]:
        found, seen, todo = set(), set(starts), list(starts)
        while todo:
            for nxt in step(todo.pop()):
                if nxt in seen:
                    continue
                seen.add(nxt)
                if is_layer[nxt]:
                    found.add(str(nxt.target))
                else:
                    todo.append(nxt)
        return found

    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    outputs = [n for n in graph.nodes if n.op == "output"]
    is_layer.update({n: True for n in inputs})  # the backward walk stops at the model input too
    feeds: dict[str, tuple[str, ...]] = {}
    for node in graph.nodes:
        if node.op == "call_module" and str(node.target) in names:
            found = reach([node], lambda n: n.all_input_nodes)
            feeds[str(node.target)] = tuple(sorted(f for f in found if f in names)) + (
                ("input",) if any(not (isinstance(f, str) and f in names) for f in found) else ())
    is_layer.update({n: False for n in inputs})
    layer_nodes = {str(n.target): n for n in graph.nodes if is_layer[n]}
    activations = set(inputs).union(*(_downstream(n) for n in inputs))  # what the input computes, not parameters
    return _GraphFacts(reach(inputs, lambda n: n.users), reach(outputs, lambda n: n.all_input_nodes), feeds,
                       {name for name in once & names if _gates(layer_nodes[name], once, is_layer, activations)},
                       {name for name, node in layer_nodes.items() if _near_attention(node, is_layer)})


def _downstream(start: fx.Node) -> set[fx.Node]:
    seen, todo = set(), [start]
    while todo:
        for user in todo.pop().users:
            if user not in seen:
                seen.add(user)
                todo.append(user)
    return seen


def _gates(layer: fx.Node, once: set[str], is_layer: dict[fx.Node, bool], activations: set[fx.Node]) -> bool:
    """Whether ``layer``'s output scales another activation (x * gate) through elementwise steps and other
    once-per-sample layers: a squeeze-excitation branch. ``x * sigmoid(x)`` of its own output is no gate,
    nor is a product with a parameter (ConvNeXt's layer scale)."""
    derived = _downstream(layer)
    seen, todo = {layer}, [layer]
    while todo:
        for user in todo.pop().users:
            if user in seen or user.op == "output" or _shape_of(user):
                continue
            seen.add(user)
            if is_layer[user] and str(user.target) not in once:
                continue
            if _is(user, _MULTIPLY) and any(isinstance(a, fx.Node) and a in activations and a not in derived
                                           and a is not layer for a in user.args):
                return True
            todo.append(user)
    return False


def _near_attention(layer: fx.Node, is_layer: dict[fx.Node, bool]) -> bool:
    """Whether an attention product lies between ``layer`` and the next layer, up- or downstream."""
    for step in (lambda n: n.users, lambda n: n.all_input_nodes):
        seen, todo = {layer}, [layer]
        while todo:
            for nxt in step(todo.pop()):
                if nxt in seen or nxt.op in ("placeholder", "output", "get_attr") or is_layer.get(nxt) or _shape_of(nxt):
                    continue
                seen.add(nxt)
                if _is(nxt, _ATTENTION) and sum(isinstance(a, fx.Node) and a.op != "get_attr"
                                               for a in nxt.args[:2]) >= (1 if _is(nxt, {F.softmax, torch.softmax,
                                                                                          "softmax"}) else 2):
                    return True
                todo.append(nxt)
    return False


def _probe_shapes(model: nn.Module, layers: list[tuple[str, nn.Module]]) -> list[tuple[int, ...]]:
    """Candidate per-sample input shapes from the first registered layer (a guess, then verified)."""
    if not layers:
        return []
    first = layers[0][1]
    if isinstance(first, nn.Linear):
        return [(first.in_features,)]
    if isinstance(first, nn.Conv2d):
        return [(first.in_channels, s, s) for s in _CONV_PROBE_SIDES]
    if isinstance(first, nn.Conv1d):
        return [(first.in_channels, n) for n in _CONV1D_PROBE_LENGTHS]
    return []


def _example_for(model: nn.Module, shape: Sequence[int]) -> torch.Tensor:
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    return torch.randn((2, *shape), generator=torch.Generator().manual_seed(0)).to(device, dtype)


def _run_sample(
    model: nn.Module, layers: list[tuple[str, nn.Module]], input_shape: Sequence[int] | None
) -> tuple[_Trace, tuple[int, ...], bool]:
    if input_shape is not None:
        shape = tuple(int(s) for s in input_shape)
        try:
            return _trace(model, _example_for(model, shape), layers), shape, False
        except Exception as e:  # the user's forward can raise anything
            raise PlanError(
                f"running a sample input of shape {shape} through the model failed: {type(e).__name__}: {e}",
                "pass the per-sample input shape the model expects, e.g. --input-shape 3,32,32",
            ) from None
    for shape in _probe_shapes(model, layers):
        try:
            return _trace(model, _example_for(model, shape), layers), shape, True
        except Exception:  # noqa: BLE001 - a probe that doesn't fit is expected
            continue
    raise PlanError(
        "could not find an input shape the model accepts, so the execution order of its layers is unknown",
        "pass the per-sample input shape, e.g. --input-shape 3,32,32 (channels, height, width)",
    )


def _runs_on(model: nn.Module, shape: Sequence[int]) -> bool:
    """Whether ``model`` (eval mode, no gradients) accepts a batch of per-sample ``shape``."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(_example_for(model, shape))
        return True
    except Exception:  # noqa: BLE001 - the user's forward raises anything on a shape it doesn't take
        return False
    finally:
        model.train(was_training)


def input_shape_for(model: nn.Module, sample_shape: Sequence[int]) -> tuple[int, ...] | None:
    """The per-sample shape to feed ``model`` samples of ``sample_shape`` in: that shape if the model
    takes it; else the same values flattened (an MLP on images); else a probed shape with as many
    values (flat vectors for a CNN). None when none fits."""
    shape = tuple(int(n) for n in sample_shape)
    flat = (math.prod(shape),)
    probes = _probe_shapes(model, _candidate_layers(model))
    candidates = dict.fromkeys([shape, flat, *(p for p in probes if math.prod(p) == flat[0])])
    return next((c for c in candidates if _runs_on(model, c)), None)


def _matches(name: str, pattern: str) -> bool:
    """A glob matches a layer by its name, or any layer inside the module it names."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + ".*")


def _default(module: nn.Module, params: int, position: str, role: str, rules: PlanRules) -> tuple[Precision, str]:
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
    candidates = _candidate_layers(model)
    if not candidates:
        raise PlanError("the model has no Linear or Conv layer, so there is nothing to binarize",
                        "bnnc binarizes nn.Linear, nn.Conv1d and nn.Conv2d layers")
    trace, shape, inferred = _run_sample(model, candidates, input_shape)
    names = [n for n, _ in candidates]
    _check_globs(names, rules)

    executed = trace.order
    modules = dict(candidates)
    once = {n for n in trace.macs if trace.macs[n] == modules[n].weight.numel()}  # applied to one vector
    try:
        facts = _graph_facts(model, set(trace.macs), once)
        fallback = None
    except Exception as e:  # noqa: BLE001 - data-dependent control flow, untraceable calls, ...
        fallback = f"torch.fx can't trace the model ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]})"
        supported_executed = [n for n in executed if type(modules[n]) in SUPPORTED_TYPES]
        facts = _GraphFacts(set(supported_executed[:1]), set(executed[-1:]), {}, set(), set())  # last: the logits

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

