"""One binary (or int8) layer as one export node: :class:`NodeSpec` says what the node computes — its
input (real, bits from a fused predecessor, raw pixels), weights, folded BatchNorm and the integer
thresholds of a fused chain — and :meth:`NodeSpec.reference` computes exactly that in torch, so the
lowered model is the reference its ONNX and OpenVINO graphs are checked against. :class:`BinaryNode`
is the module the TorchScript exporter emits as one placeholder node, replaced by :mod:`bnnc.export.graph`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bnnc.export.thresholds import FoldedThresholds
from bnnc.int8 import Int8Layer, _Int8ConvNd
from bnnc.layers import BinaryLayer, _BinaryConvNd, channel_view


@dataclass
class Fused:
    """A binary layer whose output is the next binary layer's input bits (fused chain)."""

    thresholds: FoldedThresholds
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
    out_shape: tuple[int, ...] = ()  # the output's shape, recorded when the node first runs

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


def conv_geometry(layer: Any) -> tuple[list[int], list[int], list[int], list[int]]:
    """strides, pads_begin, pads_end, dilations of a Conv1d/Conv2d (2-d form for a Conv1d: a 1 x k
    convolution); ``padding="same"`` pads ``total // 2`` first, as torch does."""
    kernel = list(layer.kernel_size)
    if isinstance(layer.padding, str):
        total = [0] * len(kernel) if layer.padding == "valid" else [
            d * (k - 1) for d, k in zip(layer.dilation, kernel, strict=True)]
        begin, end = [t // 2 for t in total], [t - t // 2 for t in total]
    else:
        begin, end = list(layer.padding), list(layer.padding)
    strides, dilations = list(layer.stride), list(layer.dilation)
    if len(kernel) == 1:
        return [1, *strides], [0, *begin], [0, *end], [1, *dilations]
    return strides, begin, end, dilations


def _max_pool(pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``pool(x)`` as a function call (a module call inside the exported function confuses the tracer)."""
    fn = F.max_pool1d if isinstance(pool, nn.MaxPool1d) else F.max_pool2d
    return fn(x, pool.kernel_size, pool.stride, pool.padding, pool.dilation, ceil_mode=pool.ceil_mode)


class _BinaryFunction(torch.autograd.Function):
    """Runs the reference in torch; the TorchScript exporter turns it into one placeholder node."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, spec: NodeSpec) -> torch.Tensor:  # type: ignore[override]
        out = spec.reference(x)
        spec.out_shape = tuple(out.shape)  # the exporter traces forward before it asks for the symbolic
        return out

    @staticmethod
    def symbolic(g: Any, x: Any, spec: NodeSpec) -> Any:
        """The placeholder's output: its dtype and sizes, the batch unknown. (Unknown rank would let the
        exporter take the example's batch size as a constant: a ``view(x.size(0), ...)`` later, as in a channel
        shuffle, would then hold it. Unknown other sizes would stop it where it needs them: an adaptive
        pooling to anything but 1 x 1. The exported model's input is fixed but for the batch, so they are
        the example's.)"""
        out = g.op("bnnc::Binary", x, index_i=spec.index)
        dtype = torch.uint8 if spec.fused is not None else torch.float32
        out.setType(x.type().with_dtype(dtype).with_sizes([None, *spec.out_shape[1:]]))
        return out


class BinaryNode(nn.Module):
    """Stands in for a binary layer in the lowered model."""

    def __init__(self, spec: NodeSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _BinaryFunction.apply(x, self.spec)
