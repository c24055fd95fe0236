"""What planning learns by running and tracing a model: execution order and MACs from a sample input
(its shape probed from the first layer when not given), and from the ``torch.fx`` graph which layers
are first and last, which gate or attend, and which feed which."""

from __future__ import annotations

import inspect
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.modules.conv import _ConvNd

from bnnc.errors import PlanError

_CONV_PROBE_SIDES = (28, 32, 64, 96, 128, 224)
_CONV1D_PROBE_LENGTHS = (16000, 1024, 256, 128, 64)


@dataclass
class Trace:
    order: list[str] = field(default_factory=list)
    macs: dict[str, int] = field(default_factory=dict)


WeightLayer = nn.Linear | _ConvNd
"""A layer with a weight matrix or kernel: what a plan decides a precision for."""


def candidate_layers(model: nn.Module) -> list[tuple[str, WeightLayer]]:
    """Every module that has weights like a Linear/Conv (supported or not), in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, _ConvNd)) and n]


def _macs(module: WeightLayer, out: torch.Tensor) -> int:
    """Multiply-accumulates of one call, per sample: output elements x fan-in."""
    per_sample = out.numel() // max(out.shape[0], 1) if out.dim() > 1 else out.numel()
    w = module.weight
    fan_in = w.shape[1] * math.prod(w.shape[2:]) if w.dim() > 2 else w.shape[-1]
    return int(per_sample * fan_in)


def _trace(model: nn.Module, example: torch.Tensor, layers: list[tuple[str, WeightLayer]]) -> Trace:
    trace = Trace()

    def hook(name: str):
        def record(module: WeightLayer, _inp: Any, out: Any) -> None:
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
class GraphFacts:
    """What the ``torch.fx`` graph says about the layers."""

    firsts: set[str]                   # reached from the input without passing another layer
    lasts: set[str]                    # reaching the output so
    feeds: dict[str, tuple[str, ...]]  # the layers (or "input") whose outputs reach each layer so
    gates: set[str]                    # squeeze-excitation: once per sample, output multiplies a feature map
    attention: set[str]                # feeding, or fed by, an attention product (q/k/v and output projections)


def graph_facts(model: nn.Module, names: set[str], once: set[str]) -> GraphFacts:
    """The layers in ``names`` the input reaches, and that reach the output, without passing another of
    them; what feeds each (two for a residual addition or a concatenation); and two roles read off the
    graph: squeeze-excitation layers (among ``once``, the layers applied once per sample, those whose
    output, through elementwise steps and other such layers, scales a tensor it doesn't derive from),
    and attention projections (those whose output reaches, or whose input comes from, a
    ``scaled_dot_product_attention``/``matmul``/``softmax`` of computed tensors before another layer).
    Raises whatever tracing raises. Traced in eval mode, as the sample ran: a branch on ``self.training``
    (GoogLeNet's auxiliary heads) is the inference one."""
    was_training = model.training
    try:
        graph = fx_graph(model.eval())
    finally:
        model.train(was_training)
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
    return GraphFacts(reach(inputs, lambda n: n.users), reach(outputs, lambda n: n.all_input_nodes), feeds,
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
                if (nxt in seen or nxt.op in ("placeholder", "output", "get_attr") or is_layer.get(nxt)
                        or _shape_of(nxt)):
                    continue
                seen.add(nxt)
                if _is(nxt, _ATTENTION) and sum(isinstance(a, fx.Node) and a.op != "get_attr"
                                               for a in nxt.args[:2]) >= (1 if _is(nxt, {F.softmax, torch.softmax,
                                                                                          "softmax"}) else 2):
                    return True
                todo.append(nxt)
    return False


def _probe_shapes(layers: list[tuple[str, WeightLayer]], values: int | None = None) -> list[tuple[int, ...]]:
    """Candidate per-sample input shapes from the first registered layer (a guess, then verified); with ``values``
    (a sample's size), first the shape of that many the layer would take: a signal of any length, a square image."""
    if not layers:
        return []
    first = layers[0][1]
    if isinstance(first, nn.Linear):
        return [(first.in_features,)]
    if isinstance(first, nn.Conv1d):
        c = first.in_channels
        exact: list[tuple[int, ...]] = [(c, values // c)] if values and values % c == 0 else []
        return exact + [(c, n) for n in _CONV1D_PROBE_LENGTHS]
    if isinstance(first, nn.Conv2d):
        c = first.in_channels
        side = math.isqrt(values // c) if values else 0
        exact = [(c, side, side)] if values and side * side * c == values else []
        return exact + [(c, s, s) for s in _CONV_PROBE_SIDES]
    return []


def _example_for(model: nn.Module, shape: Sequence[int]) -> torch.Tensor:
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    return torch.randn((2, *shape), generator=torch.Generator().manual_seed(0)).to(device, dtype)


def run_sample(
    model: nn.Module, layers: list[tuple[str, WeightLayer]], input_shape: Sequence[int] | None
) -> tuple[Trace, tuple[int, ...], bool]:
    if input_shape is not None:
        shape = tuple(int(s) for s in input_shape)
        try:
            return _trace(model, _example_for(model, shape), layers), shape, False
        except Exception as e:  # the user's forward can raise anything
            raise PlanError(
                f"running a sample input of shape {shape} through the model failed: {type(e).__name__}: {e}",
                "pass the per-sample input shape the model expects, e.g. --input-shape 3,32,32",
            ) from None
    for shape in _probe_shapes(layers):
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


def refuse_token_input(model: nn.Module) -> None:
    """A model whose first layer is an embedding takes integer token ids: say so in one line, rather than fail to
    find a shape of real values it runs on."""
    first = next(((n, m) for n, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None),
                 None)
    if first is not None and isinstance(first[1], (nn.Embedding, nn.EmbeddingBag)):
        raise PlanError(f"the model takes token ids: its first layer, {first[0]!r}, is an {type(first[1]).__name__}",
                        "bnnc binarizes models of real-valued inputs (images, signals, tables), not yet of text")


def input_shape_for(model: nn.Module, sample_shape: Sequence[int]) -> tuple[int, ...] | None:
    """The per-sample shape to feed ``model`` samples of ``sample_shape`` in: that shape if the model takes it; else
    without its leading 1 (data ``(N, T, F)`` is read as 1xTxF images at first: an LSTM or a model that transposes
    its input takes ``(T, F)``); the same values flattened (an MLP on images); a probed shape of as many values (a
    signal of any length for a Conv1d; for ``(L, C)`` samples that is ``(C, L)``, and the samples, saved channels-last,
    are swapped into it: see :func:`is_swapped`). None when none fits."""
    shape = tuple(int(n) for n in sample_shape)
    flat = (math.prod(shape),)
    stored = _stored(shape)
    probes = [p for p in _probe_shapes(candidate_layers(model), flat[0]) if math.prod(p) == flat[0]]
    candidates = dict.fromkeys([shape, stored, flat, *probes])
    return next((c for c in candidates if _runs_on(model, c)), None)


def image_shape_for(model: nn.Module, sample_shape: Sequence[int]) -> tuple[int, ...] | None:
    """The shape to read images of ``sample_shape`` ``(C, H, W)`` at for a model that takes none of the shapes
    :func:`input_shape_for` tries (images are converted and resized as they load): the first convolution's channels
    at the images' own size (grey images for an RGB model), else at the square sides models are usually trained at.
    None when none fits, or the first layer is no Conv2d."""
    layers = candidate_layers(model)
    if len(sample_shape) != 3 or not layers or not isinstance(layers[0][1], nn.Conv2d):
        return None
    c, (h, w) = layers[0][1].in_channels, tuple(int(n) for n in sample_shape[1:])
    candidates = dict.fromkeys([(c, h, w), *((c, side, side) for side in _CONV_PROBE_SIDES)])
    return next((shape for shape in candidates if _runs_on(model, shape)), None)


def is_swapped(sample_shape: Sequence[int], shape: Sequence[int]) -> bool:
    """Whether feeding samples of ``sample_shape`` as ``shape`` swaps their last two axes rather than reshaping:
    ``(1, L, C)`` -> ``(C, L)``, signals saved channels-last (Keras' Conv1D layout) for a Conv1d of C channels."""
    stored = _stored(sample_shape)
    return len(stored) == 2 and tuple(shape) == (stored[1], stored[0]) and _squeezed(stored) != _squeezed(shape)


def _stored(shape: Sequence[int]) -> tuple[int, ...]:
    """A sample shape without the leading 1 that 3-D data ``(N, A, B)`` is given when read as 1-channel images."""
    shape = tuple(int(n) for n in shape)
    return shape[1:] if len(shape) > 1 and shape[0] == 1 else shape


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(n) for n in shape if n != 1)
