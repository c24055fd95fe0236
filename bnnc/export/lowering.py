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
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from bnnc.export.batchnorm import torch_affine as batchnorm_affine
from bnnc.export.thresholds import (NotMonotone, Thresholds, bisect_integer_thresholds, float_thresholds,
                                    integer_thresholds)
from bnnc.int8 import Int8Layer, _Int8ConvNd
from bnnc.layers import BinaryLayer, _BinaryConvNd, channel_view, set_submodule
from bnnc.planning import fx_graph
from bnnc.quantizers import INT8_MAX
from bnnc.shift import ShiftBatchNorm

# Per-channel, monotone, elementwise in eval mode: can sit inside a fused chain.
_MONOTONE_MODULES = (
    nn.BatchNorm1d, nn.BatchNorm2d, ShiftBatchNorm, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
)
_MONOTONE_FUNCTIONS = (F.relu, torch.relu, F.relu6, F.hardtanh, operator.pos)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d)


@dataclass
class Fused:
    """A binary layer whose output is the next binary layer's input bits (fused chain)."""

    thresholds: Thresholds
    pool: nn.Module | None = None       # a MaxPool module, applied to the bits (or to s when per position)
    flatten: bool = False

    @property
    def per_position(self) -> bool:
        return self.thresholds.threshold.shape[1] > 1


@dataclass
class NodeSpec:
    """What one ``bnnc::Binary`` node computes.

    ``input``: ``"float"`` (binarize a real tensor with the layer's threshold), ``"bits"``
    (uint8 {0, 2} from a fused predecessor: 0 is -1, 2 is +1), ``"real"`` (a layer with a
    real-valued input, the paper's first layer) or ``"pixels"`` (that first layer on raw uint8
    pixels, integer arithmetic, the preprocessing folded into its thresholds). ``fused``: ``None`` for a
    real-valued output ``s * alpha + bias``, else the bits of the fused chain. An int8 layer
    (:mod:`bnnc.int8`) has input ``"quantize"`` (its real input quantized to uint8 inside the node) and
    ``s`` its exact integer sum.
    """

    index: int
    name: str
    layer: BinaryLayer | Int8Layer
    input: str
    fused: Fused | None = None
    integer: bool = True
    batchnorm: tuple[torch.Tensor, torch.Tensor] | None = None  # a following BatchNorm as (a, b), folded
    flatten_input: bool = False  # "pixels": the raw input is flattened inside the node
    out_rank: int = 0            # the output's rank, recorded when the node first runs

    def output_affine(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Per-channel ``(scale, shift)`` of a real-valued output ``s * scale + shift`` (None: absent)."""
        if isinstance(self.layer, Int8Layer):
            return self.layer.output_scale(), None if self.layer.bias is None else self.layer.bias.detach()
        scale, shift = self.layer.alpha, self.layer.bias
        scale = None if scale is None else scale.detach()
        shift = None if shift is None else shift.detach()
        if self.batchnorm is not None:
            a, b = self.batchnorm
            shift = b if shift is None else shift * a + b
            scale = a if scale is None else scale * a
        return scale, shift

    @property
    def is_conv(self) -> bool:
        return isinstance(self.layer, (_BinaryConvNd, _Int8ConvNd))

    @property
    def int8(self) -> bool:
        return isinstance(self.layer, Int8Layer)

    @property
    def fan_in(self) -> int:
        w = self.layer.weight
        return int(w[0].numel())

    def weight_signs(self) -> torch.Tensor:
        """The +-1 (int8: the int8) weights the node computes with, rows negated where the fused chain decreases."""
        layer = self.layer
        w = layer.quantized_weight()[0].detach() if isinstance(layer, Int8Layer) else layer.binary_weight().detach()
        if self.fused is not None:
            w = w * channel_view(self.fused.thresholds.sign.to(w.dtype), w.dim(), 0)
        return w

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The node's output in torch, as the ONNX subgraph computes it."""
        layer = self.layer
        if isinstance(layer, Int8Layer):
            return self._int8_reference(layer, x)
        if self.input == "bits":
            xb = x.to(torch.float32) - 1
        elif self.input == "pixels":
            xb = x.to(torch.float32).flatten(1) if self.flatten_input else x.to(torch.float32)
        elif self.input == "float":
            xb = layer._binarize_input(x)
        else:
            xb = x
        w = self.weight_signs().to(xb.dtype)
        s = layer._conv_forward(xb, w, None) if self.is_conv else F.linear(xb, w)  # type: ignore[attr-defined]
        if self.fused is None:
            if self.batchnorm is None:
                return layer._scale_and_bias(s, 1 if self.is_conv else -1)
            scale, shift = self.output_affine()
            dim = 1 if self.is_conv else -1
            return s * channel_view(scale, s.dim(), dim) + channel_view(shift, s.dim(), dim)
        return self._fused_bits(s)

    def _fused_bits(self, s: torch.Tensor) -> torch.Tensor:
        """The fused chain's uint8 {0, 2} bits from the layer's sums ``s``: thresholds, max pool, flatten."""
        f = self.fused
        assert f is not None
        t = f.thresholds.threshold.to(s.dtype)
        if f.per_position:
            s = _max_pool(f.pool, s) if f.pool is not None else s
            bits = (s.flatten(1) >= t.flatten()).to(s.dtype)
        else:
            bits = (s >= channel_view(t[:, 0], s.dim(), 1 if self.is_conv else -1)).to(s.dtype)
            bits = _max_pool(f.pool, bits) if f.pool is not None else bits
            bits = bits.flatten(1) if f.flatten else bits
        return (bits * 2).to(torch.uint8)

    def _int8_reference(self, layer: Int8Layer, x: torch.Tensor) -> torch.Tensor:
        """An int8 layer: its exact integer sum (float64), then its float32 output or the fused bits."""
        if self.fused is None:
            return layer(x)  # eval mode: the exact integer sum, scaled in float32
        return self._fused_bits(layer._op(layer.integer_input(x).double(), self.weight_signs().double()))


def _max_pool(pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``pool(x)`` as a function call (a module call inside the exported function confuses the tracer)."""
    fn = F.max_pool1d if isinstance(pool, nn.MaxPool1d) else F.max_pool2d
    return fn(x, pool.kernel_size, pool.stride, pool.padding, pool.dilation, ceil_mode=pool.ceil_mode)


class _BinaryFunction(torch.autograd.Function):
    """Runs the reference in torch; the TorchScript exporter turns it into one placeholder node."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, spec: NodeSpec) -> torch.Tensor:  # type: ignore[override]
        out = spec.reference(x)
        spec.out_rank = out.dim()  # the exporter traces forward before it asks for the symbolic
        return out

    @staticmethod
    def symbolic(g: Any, x: Any, spec: NodeSpec) -> Any:
        """The placeholder's output: its dtype and rank, every size unknown. (Unknown rank would let the
        exporter take the example's sizes as constants: a ``view(x.size(0), ...)`` later, as in a
        channel shuffle, would then hold the example's batch size.)"""
        out = g.op("bnnc::Binary", x, index_i=spec.index)
        dtype = torch.uint8 if spec.fused is not None else torch.float32
        out.setType(x.type().with_dtype(dtype).with_sizes([None] * spec.out_rank))
        return out


class BinaryNode(nn.Module):
    """Stands in for a binary layer in the lowered model."""

    def __init__(self, spec: NodeSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _BinaryFunction.apply(x, self.spec)


@dataclass
class Lowered:
    """The lowered model, its node specs (by index) and why chains weren't fused, for the record."""

    model: nn.Module
    specs: list[NodeSpec]
    notes: list[str]


class Normalize(nn.Module):
    """Raw uint8 pixels -> the model's input, exactly as :meth:`bnnc.data.Preprocessing.apply` does it."""

    def __init__(self, input_shape: tuple[int, ...], mean: tuple[float, ...], std: tuple[float, ...],
                 pixel_scale: float) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        stat_shape = (-1,) + (1,) * (len(input_shape) - 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(stat_shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(stat_shape))
        self.pixel_scale = float(pixel_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(torch.float32) * self.pixel_scale - self.mean) / self.std


class PixelModel(nn.Module):
    """``model(normalize(x))``: the model as it is exported with ``--uint8-input``."""

    def __init__(self, normalize: Normalize, model: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(x))


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (BinaryLayer, Int8Layer, ShiftBatchNorm, Normalize)) or super().is_leaf_module(m, qualname)


def lower(model: nn.Module, example: torch.Tensor, *, integer: bool = True) -> Lowered:
    """A copy of ``model`` (eval mode) with each binary layer replaced by a :class:`BinaryNode`."""
    model = copy.deepcopy(model).eval().requires_grad_(False)
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
            return _lower_traced(traced, example, notes)
    specs = []
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (BinaryLayer, Int8Layer))]
    for i, (name, layer) in enumerate(layers):
        spec = NodeSpec(i, name, layer, _input_mode(layer, False), integer=integer)
        set_submodule(model, name, BinaryNode(spec))
        specs.append(spec)
    return Lowered(model, specs, notes)


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
    if isinstance(layer, BinaryLayer) and layer.binary_input:  # the pool's inputs: f_before(s) for the sums s in [-K, K]
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
                beta: torch.Tensor) -> Thresholds:
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


def torch_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` with ``bn(x) == x * a + b`` (to the last ulp) for an eval-mode BatchNorm."""
    ones = torch.ones(bn.num_features)
    zeros = torch.zeros(bn.num_features)
    weight = bn.weight.detach() if bn.weight is not None else ones
    bias = bn.bias.detach() if bn.bias is not None else zeros
    a, b = batchnorm_affine(bn.running_mean.numpy(), bn.running_var.numpy(), weight.numpy(), bias.numpy(), bn.eps)
    return torch.from_numpy(a.copy()), torch.from_numpy(b.copy())


def _lower_traced(gm: fx.GraphModule, example: torch.Tensor, notes: list[str]) -> Lowered:
    from torch.fx.passes.shape_prop import ShapeProp

    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    nodes = [n for n in gm.graph.nodes
             if n.op == "call_module" and isinstance(_target(gm, n), (BinaryLayer, Int8Layer))]
    order = {n: i for i, n in enumerate(nodes)}
    fused: dict[fx.Node, tuple[Fused, list[fx.Node], fx.Node]] = {}
    receives_bits: set[fx.Node] = set()
    for node in nodes:
        layer = _target(gm, node)
        found = _chain(gm, node)
        if found is None:
            continue
        chain, successor = found
        meta = node.meta.get("tensor_meta")
        rank = len(meta.shape) if meta is not None else 0
        is_conv = isinstance(layer, (_BinaryConvNd, _Int8ConvNd))
        pool = next((_target(gm, n) for n in chain if isinstance(_target(gm, n), _POOLS)), None)
        if (not is_conv and (rank != 2 or pool is not None)) or (is_conv and rank != layer.weight.dim()):
            continue
        nxt = _target(gm, successor)
        beta = nxt.input_binarizer.beta
        channels = layer.weight.shape[0]
        beta = torch.zeros(channels) if beta is None else beta.detach().float()
        if beta.numel() % channels:
            continue
        beta = beta.reshape(channels, -1)
        has_flatten = any(_is_flatten(gm, n) for n in chain)
        if beta.shape[1] > 1 and (isinstance(layer, Int8Layer) or not (is_conv and has_flatten)):
            continue
        if pool is not None and _decreasing_after_pool(gm, layer, chain, rank):
            notes.append(f"{node.target} -> {successor.target}: a max pool before a decreasing step (a negative "
                         "BatchNorm scale) would need a min pool on the bits; not fused")
            continue
        try:
            thresholds = _thresholds(gm, layer, chain, rank, beta)
        except NotMonotone as e:
            notes.append(f"{node.target} -> {successor.target}: {e}; not fused")
            continue
        fused[node] = (Fused(thresholds, pool, has_flatten), chain, successor)
        receives_bits.add(successor)

    specs = []
    for node in nodes:
        layer = _target(gm, node)
        batchnorm = None if node in fused or isinstance(layer, Int8Layer) else _foldable_batchnorm(gm, node)
        mode = _input_mode(layer, node in receives_bits)
        entry = fused.get(node)
        spec = NodeSpec(order[node], str(node.target), layer, mode, entry[0] if entry else None)
        set_submodule(gm, str(node.target), BinaryNode(spec))
        specs.append(spec)
        if batchnorm is not None:
            spec.batchnorm = torch_affine(_target(gm, batchnorm))
            batchnorm.replace_all_uses_with(node)
            gm.graph.erase_node(batchnorm)
        if entry is not None:
            _, chain, successor = entry
            successor.replace_input_with(chain[-1] if chain else node, node)
            for n in reversed(chain):
                gm.graph.erase_node(n)
    _integer_first_layer(gm, specs, notes)
    gm.graph.lint()
    gm.recompile()
    return Lowered(gm, specs, notes)


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
    spec.fused.thresholds = Thresholds(spec.fused.thresholds.sign, acc.to(torch.int64).view(-1, 1))
    spec.input = "pixels"
    spec.flatten_input = flatten is not None
    placeholder = norm.args[0]
    consumer.replace_input_with(flatten or norm, placeholder)
    for n in (flatten, norm):
        if n is not None and not n.users:
            gm.graph.erase_node(n)
