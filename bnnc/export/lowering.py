"""Lowering a binarized model for export: every binary layer becomes one ``bnnc::Binary`` node.

Each binary layer is swapped for a :class:`BinaryNode` that computes, in torch, exactly what its
ONNX subgraph will compute (so the lowered model is itself the reference for the export) and
that the TorchScript exporter emits as a single placeholder node, later replaced by
:mod:`bnnc.export.graph`.

Integer mode also fuses chains. When a binary layer's output reaches the next binary layer's
binarizer only through per-channel monotone modules (BatchNorm, ReLU, Hardtanh, Dropout...),
max pooling and a flatten, found by tracing the model with ``torch.fx``, the chain becomes an
integer threshold (:mod:`bnnc.export.thresholds`) and the two layers exchange bits, not floats.
A model that can't be traced is still exported, without fusion.
"""

from __future__ import annotations

import copy
import operator
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from bnnc.errors import ExportError
from bnnc.export.batchnorm import module_affine
from bnnc.export.nodes import BinaryNode, Fused, NodeSpec
from bnnc.export.pixels import Normalize
from bnnc.export.thresholds import (
    FoldedThresholds,
    NotMonotone,
    bisect_integer_thresholds,
    float_thresholds,
    integer_thresholds,
)
from bnnc.int8 import Int8Layer, _Int8ConvNd
from bnnc.layers import BinaryLayer, _BinaryConvNd, channel_view, set_submodule
from bnnc.quantizers import INT8_MAX
from bnnc.shift import ShiftBatchNorm
from bnnc.tracing import fx_graph

# Per-channel, monotone, elementwise in eval mode: can sit inside a fused chain.
_MONOTONE_MODULES = (
    nn.BatchNorm1d, nn.BatchNorm2d, ShiftBatchNorm, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
)
_MONOTONE_FUNCTIONS = (F.relu, torch.relu, F.relu6, F.hardtanh, operator.pos)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d)


@dataclass
class Lowered:
    """The lowered model, its node specs (by index) and why chains weren't fused, for the record."""

    model: nn.Module
    specs: list[NodeSpec]
    notes: list[str]


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (BinaryLayer, Int8Layer, ShiftBatchNorm, Normalize)) or super().is_leaf_module(m, qualname)


def lower(model: nn.Module, example: torch.Tensor, *, integer: bool = True) -> Lowered:
    """A copy of ``model`` (eval mode) with each binary layer replaced by a :class:`BinaryNode`."""
    model = copy.deepcopy(model).eval().requires_grad_(False)
    check_running_statistics(model)
    _padding_modes_as_modules(model)
    notes: list[str] = []
    if integer:
        try:
            graph = fx_graph(model, _Tracer())
            traced: nn.Module | None = fx.GraphModule(model, graph)
        except Exception as e:  # noqa: BLE001 - any tracing failure means "export without fusion"
            notes.append(f"torch.fx could not trace the model ({type(e).__name__}: {str(e)[:120]}); "
                         "binary layers exported one by one, without fused thresholds")
            traced = None
        if traced is not None:
            functions_as_modules(traced, example)
            return _lower_traced(traced, example, notes)
    specs = []
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (BinaryLayer, Int8Layer))]
    _refuse_repeated_calls(model, layers, example, integer)
    for i, (name, layer) in enumerate(layers):
        spec = NodeSpec(i, name, layer, _input_mode(layer, False), integer=integer)
        set_submodule(model, name, BinaryNode(spec))
        specs.append(spec)
    return Lowered(model, specs, notes)


def _refuse_repeated_calls(model: nn.Module, layers: list[tuple[str, nn.Module]], example: torch.Tensor,
                           integer: bool) -> None:
    """Without a torch.fx graph a layer is one export node, which the TorchScript exporter can't call twice; a
    layer called more than once (CBAM's shared MLP) is then one clear line, not the exporter's internal error."""
    calls: Counter[str] = Counter()
    hooks = [m.register_forward_hook(lambda *_, name=name: calls.update([name])) for name, m in layers]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    repeated = next((name for name, n in calls.items() if n > 1), None)
    if repeated is not None:
        fix = ("export without --float: the integer export gives each call its own node" if not integer else
               "make forward traceable by torch.fx (no branches on tensor values), which gives each call its own node")
        raise ExportError(f"{repeated}: a layer called {calls[repeated]} times in forward can't be exported as one "
                          "node", fix)


def check_running_statistics(model: nn.Module) -> None:
    """A BatchNorm built with ``track_running_stats=False`` normalises every batch by that batch's own statistics,
    in eval too: a sample's output depends on the batch it comes in, which no exported model computes."""
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.track_running_stats:
            raise ExportError(f"{name}: a BatchNorm without running statistics (track_running_stats=False) "
                              "normalises each batch by its own mean and variance, so a sample's output depends on "
                              "its batch; no exported model can compute that",
                              "train the model with track_running_stats=True (the default), then convert it")


_PADS: dict[tuple[str, int], type[nn.Module]] = {
    ("reflect", 1): nn.ReflectionPad1d, ("reflect", 2): nn.ReflectionPad2d,
    ("replicate", 1): nn.ReplicationPad1d, ("replicate", 2): nn.ReplicationPad2d,
    ("circular", 1): nn.CircularPad1d, ("circular", 2): nn.CircularPad2d,
}


def _padding_modes_as_modules(model: nn.Module) -> None:
    """Each convolution padded other than with zeros (``padding_mode`` reflect, replicate, circular) becomes the
    padding torch applies before it, as a module, and the same convolution unpadded. Exact for a binary one too:
    its binarizer is elementwise within a channel, so binarizing the padded input is padding the +-1 input, as
    torch does; and every exporter's layer then pads with zeros or not at all, the only kind they implement."""
    for name, m in list(model.named_modules()):
        if not name or not isinstance(m, (nn.Conv1d, nn.Conv2d)) or m.padding_mode == "zeros":
            continue
        dims = len(m.kernel_size)
        pad = _PADS[(m.padding_mode, dims)](tuple(m._reversed_padding_repeated_twice))
        m.padding, m.padding_mode = (0,) * dims, "zeros"
        set_submodule(model, name, nn.Sequential(pad, m))


def _pad_module(pad: Sequence[int], mode: str, value: float | None) -> nn.Module | None:
    """The module ``F.pad(x, pad, mode, value)`` is, for one or two padded axes; None for others."""
    dims = len(pad) // 2
    if len(pad) not in (2, 4) or not all(isinstance(p, int) for p in pad):
        return None
    if mode == "constant":
        return (nn.ConstantPad1d if dims == 1 else nn.ConstantPad2d)(tuple(pad), 0.0 if value is None else value)
    module = _PADS.get((mode, dims))
    return module(tuple(pad)) if module is not None else None


# functional call -> (its parameters after the input, with defaults; the module doing the same)
_FUNCTION_MODULES: dict[Any, tuple[tuple[tuple[str, Any], ...], Callable[..., nn.Module | None]]] = {
    **{f: ((("kernel_size", None), ("stride", None), ("padding", 0), ("dilation", 1), ("ceil_mode", False),
            ("return_indices", False)), m) for f, m in ((F.max_pool1d, nn.MaxPool1d), (F.max_pool2d, nn.MaxPool2d))},
    **{f: ((("kernel_size", None), ("stride", None), ("padding", 0), ("ceil_mode", False),
            ("count_include_pad", True)), m) for f, m in ((F.avg_pool1d, nn.AvgPool1d), (F.avg_pool2d, nn.AvgPool2d))},
    **{f: ((("output_size", None), ("return_indices", False)), m)
       for f, m in ((F.adaptive_max_pool1d, nn.AdaptiveMaxPool1d), (F.adaptive_max_pool2d, nn.AdaptiveMaxPool2d))},
    **{f: ((("dim", None), ("_stacklevel", 3), ("dtype", None)), m)
       for f, m in ((F.softmax, nn.Softmax), (F.log_softmax, nn.LogSoftmax))},
    **{f: ((("dim", None), ("dtype", None)), m)
       for f, m in ((torch.softmax, nn.Softmax), ("softmax", nn.Softmax), (torch.log_softmax, nn.LogSoftmax),
                    ("log_softmax", nn.LogSoftmax))},
    F.pad: ((("pad", None), ("mode", "constant"), ("value", None)), _pad_module),
}

_DROPOUTS = (F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout)


def functions_as_modules(gm: fx.GraphModule, example: torch.Tensor) -> None:
    """Pooling, softmax and (inactive) dropout called as functions in ``forward`` — ``F.max_pool2d(x, 2)``, as in
    PyTorch's own MNIST example, or ``F.avg_pool1d(x, x.shape[-1])``, as in torchaudio's M5 — become the modules that
    compute the same, so chains through them fuse and every exporter knows them. Arguments computed from the
    sample's shape are the constants they are for ``example``'s; calls the module can't express stay as they are."""
    static = _static_values(gm, example)
    for node in list(gm.graph.nodes):
        key = node.target if node.op in ("call_function", "call_method") else None
        if key in _DROPOUTS:
            if node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True) is False:
                node.replace_all_uses_with(node.args[0])
                gm.graph.erase_node(node)
            continue
        params, module_type = _FUNCTION_MODULES.get(key, (None, None))
        if params is None or not node.args or len(node.args) > len(params) + 1:
            continue
        bound = {name: default for name, default in params}
        bound.update(zip([name for name, _ in params], node.args[1:], strict=False))
        bound.update(node.kwargs)
        bound = {name: static.get(v, v) if isinstance(v, fx.Node) else v for name, v in bound.items()}
        if set(bound) - {name for name, _ in params} or any(isinstance(v, fx.Node) for v in bound.values()):
            continue
        if bound.pop("return_indices", False) or bound.pop("dtype", None) is not None or (
                "dim" in bound and bound["dim"] is None) or ("kernel_size" in bound and bound["kernel_size"] is None):
            continue
        bound.pop("_stacklevel", None)
        module = module_type(**bound)
        if module is None:
            continue
        name = f"_bnnc_{node.name}"
        gm.add_submodule(name, module)
        with gm.graph.inserting_before(node):
            call = gm.graph.call_module(name, (node.args[0],))
        call.meta = dict(node.meta)
        node.replace_all_uses_with(call)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()


def _static_values(gm: fx.GraphModule, example: torch.Tensor) -> dict[fx.Node, Any]:
    """The integers (and tuples of them) the graph computes that don't change with the batch size — ``x.shape[-1]``,
    ``x.size(2) // 2`` — found by running it on one and on two samples."""
    runs = [_RecordingInts(gm) for _ in range(2)]
    try:
        with torch.no_grad():
            for n, run in enumerate(runs, 1):
                run.run(example[:1].expand(n, *example.shape[1:]).contiguous())
    except Exception:  # noqa: BLE001 - the user's forward may not run node by node: nothing is known then
        return {}
    return {node: v for node, v in runs[0].seen.items() if runs[1].seen.get(node) == v}


class _RecordingInts(fx.Interpreter):
    """Runs the graph, keeping each node's value that is an integer or a tuple of them."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.seen: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if _is_ints(out):
            self.seen[n] = out
        return out


def _is_ints(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, (tuple, list)) and bool(value) and all(_is_ints(v) for v in value))


def _input_mode(layer: BinaryLayer | Int8Layer, receives_bits: bool) -> str:
    if isinstance(layer, Int8Layer):
        return "quantize"
    return "real" if not layer.binary_input else "bits" if receives_bits else "float"


def _target(gm: fx.GraphModule, node: fx.Node) -> Any:
    return gm.get_submodule(node.target) if node.op == "call_module" else node.target  # type: ignore[arg-type]


def _is_flatten(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        m = gm.get_submodule(node.target)  # type: ignore[arg-type]
        return isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1
    if (node.op == "call_function" and node.target is torch.flatten) or (
            node.op == "call_method" and node.target == "flatten"):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return start == 1 and end == -1
    return False


def _chain(gm: fx.GraphModule, start: fx.Node) -> tuple[list[fx.Node], fx.Node] | None:
    """Nodes from ``start``'s output to the next binary-input layer, if it can become a threshold."""
    chain: list[fx.Node] = []
    node = start
    pools = flatten = 0
    while True:
        if len(node.users) != 1:
            return None
        (user,) = node.users
        if user.args[:1] != (node,) or any(a is node for a in (*user.args[1:], *user.kwargs.values())):
            return None
        target = _target(gm, user)
        if isinstance(target, BinaryLayer):
            return (chain, user) if target.binary_input else None
        if user.op == "call_module" and isinstance(target, _MONOTONE_MODULES) and not flatten:
            pass
        elif user.op == "call_function" and target in _MONOTONE_FUNCTIONS and not flatten:
            if any(isinstance(a, fx.Node) for a in (*user.args[1:], *user.kwargs.values())):
                return None
        elif user.op == "call_module" and isinstance(target, _POOLS) and not pools and not flatten:
            if target.return_indices:
                return None
            pools += 1
        elif _is_flatten(gm, user) and not flatten:
            flatten += 1
        else:
            return None
        chain.append(user)
        node = user


def _apply_chain(gm: fx.GraphModule, layer: BinaryLayer | Int8Layer, chain: list[fx.Node], y: torch.Tensor
                 ) -> torch.Tensor:
    """The chain's per-channel functions (scale, bias, then the elementwise modules) applied to the layer's sum ``y``
    (an int8 layer's integer sum is first scaled as its forward does: float32, times ``s_x * s_w``)."""
    dim = 1 if isinstance(layer, (_BinaryConvNd, _Int8ConvNd)) else -1
    with torch.no_grad():
        if isinstance(layer, Int8Layer):
            y = y.to(torch.float32) * channel_view(layer.output_scale(), y.dim(), dim)
            y = y if layer.bias is None else y + channel_view(layer.bias.detach(), y.dim(), dim)
            return _apply_nodes(gm, chain, y)
        return _apply_nodes(gm, chain, layer._scale_and_bias(y, dim))


def _apply_nodes(gm: fx.GraphModule, nodes: list[fx.Node], x: torch.Tensor) -> torch.Tensor:
    """The elementwise steps among ``nodes`` applied to ``x`` (pools and flattens skipped)."""
    with torch.no_grad():
        for node in nodes:
            target = _target(gm, node)
            if isinstance(target, _POOLS) or _is_flatten(gm, node):
                continue
            x = target(x) if node.op == "call_module" else target(x, *node.args[1:], **node.kwargs)
    return x


def _decreasing_after_pool(gm: fx.GraphModule, layer: BinaryLayer, chain: list[fx.Node], rank: int) -> bool:
    """Whether, in some channel, the steps after the chain's max pool decrease (a BatchNorm with a negative
    scale). The pool is applied to the bits, which equals pooling first only where those steps don't
    decrease: max then a decreasing step is a min of the bits."""
    at = next((i for i, n in enumerate(chain) if isinstance(_target(gm, n), _POOLS)), None)
    if at is None or not chain[at + 1:]:
        return False
    channels = layer.weight.shape[0]
    # the pool's inputs: f_before(s) for the sums s in [-K, K]
    if isinstance(layer, BinaryLayer) and layer.binary_input:
        u = _chain_values(gm, layer, chain[:at], rank)
    else:
        grid = torch.cat([-torch.logspace(-6, 30, 2000).flip(0), torch.zeros(1), torch.logspace(-6, 30, 2000)])
        x = grid.view(-1, 1).expand(-1, channels).reshape((len(grid), channels) + (1,) * (rank - 2)).contiguous()
        u = _apply_chain(gm, layer, chain[:at], x).reshape(len(grid), channels)
    u = u.sort(dim=0).values
    v = _apply_nodes(gm, chain[at + 1:], u.reshape(u.shape + (1,) * (rank - 2))).reshape(u.shape)
    return bool((v[1:] < v[:-1]).any())


def _chain_values(gm: fx.GraphModule, layer: BinaryLayer, chain: list[fx.Node], rank: int) -> torch.Tensor:
    """``f_c(s)`` for every integer ``s`` in [-K, K] and every channel: (2K + 1, C)."""
    k = int(layer.weight[0].numel())
    channels = layer.weight.shape[0]
    grid = torch.arange(-k, k + 1, dtype=torch.float32)
    x = grid.view(-1, 1).expand(-1, channels).reshape((2 * k + 1, channels) + (1,) * (rank - 2)).contiguous()
    return _apply_chain(gm, layer, chain, x).reshape(2 * k + 1, channels)


def _thresholds(gm: fx.GraphModule, layer: BinaryLayer, chain: list[fx.Node], rank: int,
                beta: torch.Tensor) -> FoldedThresholds:
    """Integer thresholds after a binary-input or int8 layer, float ones after a real-input layer."""
    if isinstance(layer, Int8Layer):
        channels = beta.shape[0]
        bound = 255 * INT8_MAX * int(layer.weight[0].numel())

        def acc_chain(acc: torch.Tensor) -> torch.Tensor:  # (C, 1) int64 -> (C, 1), channel c through f_c
            x = acc.t().reshape((1, channels) + (1,) * (rank - 2)).contiguous()
            return _apply_chain(gm, layer, chain, x).reshape(1, channels).t()

        return bisect_integer_thresholds(acc_chain, beta, bound)
    if layer.binary_input:
        return integer_thresholds(_chain_values(gm, layer, chain, rank), beta)
    channels, positions = beta.shape

    def chain_fn(y: torch.Tensor) -> torch.Tensor:  # (C, P) -> (C, P), channel c through f_c
        x = y.t().reshape((positions, channels) + (1,) * (rank - 2)).contiguous()
        return _apply_chain(gm, layer, chain, x).reshape(positions, channels).t()

    return float_thresholds(chain_fn, beta)


_MIXING_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                   nn.Softmax, nn.LogSoftmax)
# (a fixed-window AvgPool is not among them: ORT sums its few inputs in torch's order, so the
# exact value survives it, and a binarizer after it sees every last-ulp difference before it)


def _reaches_binarizer(gm: fx.GraphModule, node: fx.Node, depth: int = 0) -> bool:
    """Whether a last-ulp change of ``node``'s value could flip a binarizer's bit downstream.

    Conservative: only a path ending in the graph output or in a float layer that sums many
    inputs (Linear, Conv, average pooling) is known not to; anything else counts as reaching.
    """
    if depth > 64:
        return True
    for user in node.users:
        if user.op == "output":
            continue
        target = _target(gm, user)
        if isinstance(target, Int8Layer):  # it rounds its input to 8 bits: a last-ulp change can move a step
            return True
        if user.op == "call_module" and isinstance(target, _MIXING_MODULES) and not isinstance(target, BinaryLayer):
            continue
        if isinstance(target, BinaryLayer) and not target.binary_input:
            continue
        if isinstance(target, BinaryLayer) or _reaches_binarizer(gm, user, depth + 1):
            return True
    return False


def _foldable_batchnorm(gm: fx.GraphModule, node: fx.Node) -> fx.Node | None:
    """A plain BatchNorm right after ``node`` on its channel axis, whose exact rounding no binarizer
    depends on. (A Linear on a (batch, tokens, features) input feeds BatchNorm1d its tokens axis:
    not foldable into per-feature scales.)"""
    meta = node.meta.get("tensor_meta")
    layer = _target(gm, node)
    expected_rank = layer.weight.dim() if isinstance(layer, _BinaryConvNd) else 2
    if len(node.users) != 1 or meta is None or len(meta.shape) != expected_rank:
        return None
    (user,) = node.users
    target = _target(gm, user)
    if (user.op != "call_module" or type(target) not in (nn.BatchNorm1d, nn.BatchNorm2d)
            or target.running_mean is None or user.args[:1] != (node,)):
        return None
    return None if _reaches_binarizer(gm, user) else user


_Chain = tuple[Fused, list[fx.Node], fx.Node]   # the fusion, the nodes it replaces, the next binary layer


def _lower_traced(gm: fx.GraphModule, example: torch.Tensor, notes: list[str]) -> Lowered:
    """Find the fusable chains between binary layers, then swap every layer for its export node."""
    from torch.fx.passes.shape_prop import ShapeProp

    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    nodes = [n for n in gm.graph.nodes
             if n.op == "call_module" and isinstance(_target(gm, n), (BinaryLayer, Int8Layer))]
    _a_name_a_call(gm, nodes)
    fused = {node: chain for node in nodes if (chain := _fusable_chain(gm, node, notes)) is not None}
    specs = _swap_in_nodes(gm, nodes, fused)
    _integer_first_layer(gm, specs, notes)
    gm.graph.lint()
    gm.recompile()
    return Lowered(gm, specs, notes)


def _a_name_a_call(gm: fx.GraphModule, nodes: list[fx.Node]) -> None:
    """A layer called more than once (the MLP CBAM's channel attention runs on both the average- and the max-pooled
    features) gets a copy of it for each further call, ``NAME_call1``...: every call then becomes its own export
    node, with its own input and output folding (the weights are stored once a call; one module object under two
    names breaks the TorchScript exporter)."""
    calls: Counter[str] = Counter()
    for node in nodes:
        target = str(node.target)
        calls[target] += 1
        if calls[target] > 1:
            name = f"{target}_call{calls[target] - 1}"
            gm.add_submodule(name, copy.deepcopy(gm.get_submodule(target)))
            node.target = name


def _fusable_chain(gm: fx.GraphModule, node: fx.Node, notes: list[str]) -> _Chain | None:
    """The chain from ``node``'s layer to the next binary layer as integer thresholds, if it folds exactly
    (why not, in ``notes``, where that is worth telling)."""
    layer = _target(gm, node)
    found = _chain(gm, node)
    if found is None:
        return None
    chain, successor = found
    meta = node.meta.get("tensor_meta")
    rank = len(meta.shape) if meta is not None else 0
    is_conv = isinstance(layer, (_BinaryConvNd, _Int8ConvNd))
    pool = next((_target(gm, n) for n in chain if isinstance(_target(gm, n), _POOLS)), None)
    if (not is_conv and (rank != 2 or pool is not None)) or (is_conv and rank != layer.weight.dim()):
        return None
    beta = _successor_thresholds(_target(gm, successor), layer.weight.shape[0])
    if beta is None:
        return None
    has_flatten = any(_is_flatten(gm, n) for n in chain)
    if beta.shape[1] > 1 and (isinstance(layer, Int8Layer) or not (is_conv and has_flatten)):
        return None
    if pool is not None and _decreasing_after_pool(gm, layer, chain, rank):
        notes.append(f"{node.target} -> {successor.target}: a max pool before a decreasing step (a negative "
                     "BatchNorm scale) would need a min pool on the bits; not fused")
        return None
    try:
        thresholds = _thresholds(gm, layer, chain, rank, beta)
    except NotMonotone as e:
        notes.append(f"{node.target} -> {successor.target}: {e}; not fused")
        return None
    return Fused(thresholds, pool, has_flatten), chain, successor


def _successor_thresholds(successor: BinaryLayer, channels: int) -> torch.Tensor | None:
    """The next layer's input thresholds as ``(channels, positions)``; None if they don't split by channel."""
    beta = successor.input_binarizer.beta
    beta = torch.zeros(channels) if beta is None else beta.detach().float()
    return None if beta.numel() % channels else beta.reshape(channels, -1)


def _swap_in_nodes(gm: fx.GraphModule, nodes: list[fx.Node], fused: dict[fx.Node, _Chain]) -> list[NodeSpec]:
    """Each layer becomes a :class:`BinaryNode`; a BatchNorm right after it folds into it, a fused chain's
    nodes go (the next layer then reads this one's bits)."""
    receives_bits = {successor for _, _, successor in fused.values()}
    specs = []
    for order, node in enumerate(nodes):
        layer = _target(gm, node)
        batchnorm = None if node in fused or isinstance(layer, Int8Layer) else _foldable_batchnorm(gm, node)
        entry = fused.get(node)
        spec = NodeSpec(order, str(node.target), layer, _input_mode(layer, node in receives_bits),
                        entry[0] if entry else None)
        set_submodule(gm, str(node.target), BinaryNode(spec))
        specs.append(spec)
        if batchnorm is not None:
            spec.batchnorm = module_affine(_target(gm, batchnorm))
            batchnorm.replace_all_uses_with(node)
            gm.graph.erase_node(batchnorm)
        if entry is not None:
            _, chain, successor = entry
            successor.replace_input_with(chain[-1] if chain else node, node)
            for n in reversed(chain):
                gm.graph.erase_node(n)
    return specs


def _integer_first_layer(gm: fx.GraphModule, specs: list[NodeSpec], notes: list[str]) -> None:
    """With raw pixels in, run the first binary Linear on them as integers (the paper's 8-bit first layer).

    ``y = W . (p * scale - m) / sd = (scale / sd) * (W . p) - (m / sd) * sum(W)`` for one shared
    mean/std, so the float threshold on ``y`` becomes an integer one on ``acc = W . p``
    (MatMulInteger, uint8 x int8). The integer sum is exact where torch's float sum rounds, so a
    bit may differ where ``y`` sits within rounding of the threshold.
    """
    norm = next((n for n in gm.graph.nodes if n.op == "call_module" and isinstance(_target(gm, n), Normalize)), None)
    if norm is None:
        return
    normalize: Normalize = _target(gm, norm)
    users = list(norm.users)
    flatten = users[0] if len(users) == 1 and _is_flatten(gm, users[0]) else None
    consumer = next(iter((flatten or norm).users), None) if len((flatten or norm).users) == 1 else None
    spec = next((s for s in specs if consumer is not None and consumer.op == "call_module"
                 and str(consumer.target) == s.name), None)
    mean, std = normalize.mean.flatten().unique(), normalize.std.flatten().unique()
    why = None
    if spec is None or spec.is_conv or spec.input != "real":
        why = "the first layer fed by the input is not a binary-weight Linear layer"
    elif spec.fused is None or spec.fused.per_position:
        why = "the first layer's output isn't folded into per-channel thresholds"
    elif len(mean) != 1 or len(std) != 1:
        why = "the preprocessing has a different mean/std per channel"
    if why is not None:
        notes.append(f"--uint8-input: {why}; the preprocessing runs in float inside the model")
        return
    w = spec.weight_signs().double()                       # (C, K), rows flipped where the chain decreases
    scale, m, sd = normalize.pixel_scale, float(mean[0]), float(std[0])
    t_y = spec.fused.thresholds.threshold[:, 0].double()  # on y, float
    k = w.shape[1]
    acc = torch.ceil((t_y + (m / sd) * w.sum(1)) * (sd / scale))
    limit = 255 * k + 1
    acc = torch.nan_to_num(acc, nan=limit, posinf=limit, neginf=-limit).clamp(-limit, limit)
    spec.fused.thresholds = FoldedThresholds(spec.fused.thresholds.sign, acc.to(torch.int64).view(-1, 1))
    spec.input = "pixels"
    spec.flatten_input = flatten is not None
    placeholder = norm.args[0]
    consumer.replace_input_with(flatten or norm, placeholder)
    for n in (flatten, norm):
        if n is not None and not n.users:
            gm.graph.erase_node(n)
