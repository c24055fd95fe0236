"""ONNX subgraphs for the ``bnnc::Binary`` placeholder nodes (see :mod:`bnnc.export.lowering`).

Integer mode (the default):

* input bits: ``x >= beta`` -> ``Where(2, 0)`` as uint8, read with zero point 1, so {0, 2} is
  {-1, +1}; a fused predecessor hands over such bits directly;
* linear: ``MatMulInteger(bits, W_int8, zero point 1)`` -> int32 ``s`` (uint8 x int8 is ORT's
  fast path; int8 x int8 is slow on AVX2);
* convolution to bits: ``QLinearConv`` (uint8 x int8) with bias ``-T``, multiplier 256 and
  output zero point 255, which saturates to 255 exactly where ``s >= T`` and to 0 elsewhere;
  ``Min 2`` (after any max pool) gives the next layer's {0, 2}, in ORT's NHWC layout throughout. Zero padding uses
  the zero point, i.e.
  contributes 0, as torch's zero padding of a +-1 input does;
* convolution whose sum is needed as such (a real-valued output, or thresholds per position
  after a flatten): a float ``Conv`` on +-1 — exact, since the sums are small integers, and on
  this kind of CPU 3.5x faster than ORT's ``ConvInteger``;
* real-valued output: ``s * alpha + bias``, the same float operations as torch.

Float mode (``--float``) computes the same function with float +-1 tensors for runtimes without
integer kernels. Weights are stored packed at 1 bit (:mod:`bnnc.export.packing`) in both modes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from bnnc.export.nodes import NodeSpec
from bnnc.export.packing import pack_signs
from bnnc.quantizers import INT8_MAX

SHARED = frozenset({"axes1", "shifts", "one_u8", "flat", "start", "one", "plus", "minus", "two_u8", "zero_u8",
                    "one_f", "x_zero_point", "w_zero_point", "y_scale", "y_zero_point", "zero"})
"""Constants every binary layer uses alike: stored once per model, not once per layer."""

INT8_PRODUCT = 255 * INT8_MAX
"""The largest |product| of a uint8 input step and an int8 layer's weight."""

COMPUTE = frozenset({"MatMulInteger", "QLinearConv", "Conv", "MatMul", "MaxPool", "ConvInteger", "QuantizeLinear"})
"""Nodes named after their layer (what a profile shows); the glue between them gets no name."""


class _Builder:
    """Collects the nodes and initializers of one subgraph. Tensor names are short (``b{index}:{n}``:
    every edge stores its name twice) and shared constants are named once per model. Constants are
    ``b{index}:{name}``, never ``b{index}.{name}``: that is how torch names a parameter of a module ``b2``
    (a BatchNorm called so), and two tensors of one name make an invalid graph."""

    def __init__(self, prefix: str, layer: str, shared: dict[str, np.ndarray]) -> None:
        self.prefix, self.layer = prefix, layer
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._n = 0
        self._shared = shared
        self._consts: dict[str, np.ndarray] = {}

    def const(self, name: str, value: np.ndarray) -> str:
        """An initializer; the same name and value give the same tensor, a new value a new name."""
        value = np.asarray(value)
        known = self._shared if name in SHARED else self._consts
        full, i = f"{'bnnc' if name in SHARED else self.prefix}:{name}", 1
        while full in known:
            old = known[full]
            if old.dtype == value.dtype and old.shape == value.shape and np.array_equal(old, value):
                return full
            i += 1
            full = f"{'bnnc' if name in SHARED else self.prefix}:{name}_{i}"
        known[full] = value
        self.initializers.append(numpy_helper.from_array(value, full))
        return full

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        self._n += 1
        out = output or f"{self.prefix}:{self._n}"
        name = f"{self.layer}/{op}" if op in COMPUTE else ""
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def unpacked(self, weight: torch.Tensor, as_type: str, transpose: bool = False) -> str:
        """The +-1 ``weight`` stored at 1 bit, unpacked in the graph to int8 +-1, uint8 {0,2} or float +-1."""
        w = weight.t() if transpose else weight
        shape = np.array(w.shape, dtype=np.int64)
        n = int(w.numel())
        packed = self.const("weight_bits", pack_signs(w))
        col = self.node("Unsqueeze", [packed, self.const("axes1", np.array([1], dtype=np.int64))])
        shifted = self.node("BitShift", [col, self.const("shifts", np.arange(7, -1, -1, dtype=np.uint8))],
                            direction="RIGHT")
        bits = self.node("BitwiseAnd", [shifted, self.const("one_u8", np.array(1, dtype=np.uint8))])
        flat = self.node("Reshape", [bits, self.const("flat", np.array([-1], dtype=np.int64))])
        if n % 8:
            flat = self.node("Slice", [flat, self.const("start", np.array([0], dtype=np.int64)),
                                       self.const("stop", np.array([n], dtype=np.int64))])
        bits = self.node("Reshape", [flat, self.const("shape", shape)])
        if as_type == "uint8_02":
            return self.node("BitShift", [bits, self.const("one", np.array(1, dtype=np.uint8))], direction="LEFT")
        cond = self.node("Cast", [bits], to=TensorProto.BOOL)
        dtype = np.int8 if as_type == "int8" else np.float32
        return self.node("Where", [cond, self.const("plus", np.array(1, dtype=dtype)),
                                   self.const("minus", np.array(-1, dtype=dtype))])


def _per_channel(b: _Builder, name: str, v: torch.Tensor, spec: NodeSpec, rank: int, dtype: Any) -> str:
    """A per-channel vector shaped to broadcast over (N, C, ...) for convs, (..., C) for linear."""
    arr = v.detach().cpu().numpy().astype(dtype)
    if spec.is_conv:
        arr = arr.reshape((-1,) + (1,) * (rank - 2))
    return b.const(name, arr)


def _conv_attrs(spec: NodeSpec) -> dict[str, Any]:
    layer: Any = spec.layer
    kernel = list(layer.kernel_size)
    if isinstance(layer.padding, str):
        if layer.padding == "valid":
            pads = [0] * (2 * len(kernel))
        else:  # "same" (stride 1): torch puts the extra pixel at the end
            total = [d * (k - 1) for d, k in zip(layer.dilation, kernel, strict=True)]
            pads = [t // 2 for t in total] + [t - t // 2 for t in total]
    else:
        pads = list(layer.padding) * 2
    return {"kernel_shape": kernel, "strides": list(layer.stride), "pads": pads,
            "dilations": list(layer.dilation), "group": int(layer.groups)}


def _pool_attrs(pool: Any, dims: int) -> dict[str, Any]:
    def tup(v: Any) -> list[int]:
        return list(v) if isinstance(v, (tuple, list)) else [int(v)] * dims
    stride = pool.stride if pool.stride is not None else pool.kernel_size
    return {"kernel_shape": tup(pool.kernel_size), "strides": tup(stride), "pads": tup(pool.padding) * 2,
            "dilations": tup(pool.dilation), "ceil_mode": int(pool.ceil_mode)}


def build(spec: NodeSpec, x: str, y: str, rank: int, shared: dict[str, np.ndarray]
          ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes and initializers computing ``y = spec(x)``; ``rank`` is the layer output's rank; ``shared``
    holds the model's shared constants (pass the same dict for every layer of a model)."""
    b = _Builder(f"b{spec.index}", spec.name, shared)
    if spec.int8:  # integer ops in both modes: standard ONNX, every runtime has them
        _int8(b, spec, x, y, rank)
    elif spec.integer:
        _integer(b, spec, x, y, rank)
    else:
        _float(b, spec, x, y, rank)
    return b.nodes, b.initializers


def _beta(b: _Builder, spec: NodeSpec, rank: int) -> str:
    binarizer = spec.layer.input_binarizer
    beta = binarizer.beta if binarizer is not None else None
    if beta is None:
        return b.const("zero", np.array(0, dtype=np.float32))
    return _per_channel(b, "beta", beta, spec, rank, np.float32)


def _scale_and_bias(b: _Builder, spec: NodeSpec, y_float: str, y: str, rank: int) -> None:
    scale, shift = spec.output_affine()
    steps = [(scale, "alpha", "Mul"), (shift, "bias", "Add")]
    steps = [s for s in steps if s[0] is not None]
    if not steps:
        b.node("Identity", [y_float], y)
    for i, (v, name, op) in enumerate(steps):
        y_float = b.node(op, [y_float, _per_channel(b, name, v, spec, rank, np.float32)],
                         y if i == len(steps) - 1 else None)


def _float(b: _Builder, spec: NodeSpec, x: str, y: str, rank: int) -> None:
    """+-1 as float: for runtimes without integer kernels."""
    if spec.input == "float":
        x = _signs_as_float(b, spec, x, rank)
    w = spec.weight_signs()
    if spec.is_conv:
        s = b.node("Conv", [x, b.unpacked(w, "float")], **_conv_attrs(spec))
    else:
        s = b.node("MatMul", [x, b.unpacked(w, "float", transpose=True)])
    _scale_and_bias(b, spec, s, y, rank)


def _integer(b: _Builder, spec: NodeSpec, x: str, y: str, rank: int) -> None:
    fused, w, dims = spec.fused, spec.weight_signs(), rank - 2
    if fused is None and spec.input == "real":  # real-valued input and output: float compute, 1-bit weights
        _float(b, spec, x, y, rank)
        return
    if spec.is_conv and fused is not None and fused.per_position and spec.input != "real":
        window = _per_position_window(fused.thresholds.threshold, spec.fan_in)
        if window is not None:
            _qlinearconv_window(b, spec, _bits(b, spec, x, rank), y, w, *window, dims)
            return
    if spec.is_conv and (fused is None or fused.per_position):
        # A conv whose sum is needed as such: ORT's ConvInteger (u8 x u8) ran 3.5x slower than its
        # float Conv here, and sums of +-1 are exact in float32, so the float kernel it is.
        xs = x if spec.input == "real" else _signs_as_float(b, spec, x, rank)
        s = b.node("Conv", [xs, b.unpacked(w, "float")], **_conv_attrs(spec))
        if fused is None:
            if any(v is not None for v in spec.output_affine()):
                # ORT would fold a constant Mul/Add into the Conv's weights (ConvMulFusion), which
                # rounds differently from torch's s * alpha; a round trip through int32 (exact for
                # these integers) keeps them apart.
                s = b.node("Cast", [b.node("Cast", [s], to=TensorProto.INT32)], to=TensorProto.FLOAT)
            _scale_and_bias(b, spec, s, y, rank)
            return
        if fused.pool is not None:
            s = b.node("MaxPool", [s], **_pool_attrs(fused.pool, dims))
        s = b.node("Flatten", [s], axis=1)
        t = fused.thresholds.threshold.flatten().numpy().astype(np.float32)
        b.node("Where", [b.node("GreaterOrEqual", [s, b.const("threshold", t)]), *_bit_values(b)], y)
        return
    zp = b.const("x_zero_point", np.array(1, dtype=np.uint8))
    if fused is None:  # linear, real-valued output
        s = b.node("MatMulInteger", [_bits(b, spec, x, rank), b.unpacked(w, "int8", transpose=True), zp])
        _scale_and_bias(b, spec, b.node("Cast", [s], to=TensorProto.FLOAT), y, rank)
        return
    t = fused.thresholds.threshold[:, 0]
    if spec.is_conv and spec.input != "real":  # per channel: straight from bits to bits
        _qlinearconv_bits(b, spec, _bits(b, spec, x, rank), y, zp, b.unpacked(w, "int8"), t, dims)
        return
    if spec.input == "pixels":  # raw uint8 pixels x int8 weights, zero point 0
        x = b.node("Flatten", [x], axis=1) if spec.flatten_input else x
        s = b.node("MatMulInteger", [x, b.unpacked(w, "int8", transpose=True)])
        threshold = _per_channel(b, "threshold", t, spec, rank, np.int32)
    elif spec.input == "real":
        s = (b.node("Conv", [x, b.unpacked(w, "float")], **_conv_attrs(spec)) if spec.is_conv
             else b.node("MatMul", [x, b.unpacked(w, "float", transpose=True)]))
        threshold = _per_channel(b, "threshold", t, spec, rank, np.float32)
    else:
        s = b.node("MatMulInteger", [_bits(b, spec, x, rank), b.unpacked(w, "int8", transpose=True), zp])
        if int(t.abs().max()) < 2**15:  # stored as int16 (half the bytes), widened once at session start
            threshold = b.node("Cast", [_per_channel(b, "threshold", t, spec, rank, np.int16)], to=TensorProto.INT32)
        else:
            threshold = _per_channel(b, "threshold", t, spec, rank, np.int32)
    _compare_to_bits(b, fused, s, threshold, y, dims)


def _compare_to_bits(b: _Builder, fused: Any, s: str, threshold: str, y: str, dims: int) -> None:
    """``s >= threshold`` as the next layer's uint8 {0, 2} bits, then the chain's max pool and flatten."""
    last = fused.pool is None and not fused.flatten
    bits = b.node("Where", [b.node("GreaterOrEqual", [s, threshold]), *_bit_values(b)], y if last else None)
    _pool_and_flatten(b, fused, bits, y, dims)


def _bit_values(b: _Builder) -> tuple[str, str]:
    """uint8 2 and 0: +1 and -1 read with zero point 1."""
    return b.const("two_u8", np.array(2, dtype=np.uint8)), b.const("zero_u8", np.array(0, dtype=np.uint8))


def _bits(b: _Builder, spec: NodeSpec, x: str, rank: int) -> str:
    """The layer's +-1 input as uint8 {0, 2}: binarized from a real tensor, or the fused bits as they are."""
    if spec.input != "float":
        return x
    return b.node("Where", [b.node("GreaterOrEqual", [x, _beta(b, spec, rank)]), *_bit_values(b)])


def _signs_as_float(b: _Builder, spec: NodeSpec, x: str, rank: int) -> str:
    """The layer's +-1 input as float: binarized from a real tensor, or from fused uint8 {0, 2} bits."""
    if spec.input == "float":
        cond = b.node("GreaterOrEqual", [x, _beta(b, spec, rank)])
        return b.node("Where", [cond, b.const("plus", np.array(1, dtype=np.float32)),
                                b.const("minus", np.array(-1, dtype=np.float32))])
    return b.node("Sub", [b.node("Cast", [x], to=TensorProto.FLOAT), b.const("one_f", np.array(1.0, dtype=np.float32))])


def _pool_and_flatten(b: _Builder, fused: Any, bits: str, y: str, dims: int) -> None:
    if fused.pool is not None:
        bits = b.node("MaxPool", [bits], None if fused.flatten else y, **_pool_attrs(fused.pool, dims))
    if fused.flatten:
        b.node("Flatten", [bits], y, axis=1)


def _qlinearconv_bits(b: _Builder, spec: NodeSpec, x: str, y: str, zp: str, weight: str,
                      t: torch.Tensor, dims: int) -> None:
    """A conv (binary, or int8) straight to the next layer's bits: saturating requantization does the compare.

    The {0, 255} output is max-pooled as it is (pooling commutes with the monotone 255 -> 2) and
    then clipped with ``Min 2``: ORT pushes its NHWC layout through Min (not through BitwiseAnd), so
    consecutive QLinearConv and MaxPool nodes run in one layout with no Transpose between them.
    """
    one = b.const("one_f", np.array(1.0, dtype=np.float32))
    q = b.node("QLinearConv", [
        x, one, zp, weight, one, b.const("w_zero_point", np.array(0, dtype=np.int8)),
        b.const("y_scale", np.array(1 / 256, dtype=np.float32)),
        b.const("y_zero_point", np.array(255, dtype=np.uint8)),
        b.const("bias", (-t).numpy().astype(np.int32)),
    ], **_conv_attrs(spec))
    fused = spec.fused
    assert fused is not None
    if fused.pool is not None:
        q = b.node("MaxPool", [q], **_pool_attrs(fused.pool, dims))
    bits = b.node("Min", [q, b.const("two_u8", np.array(2, dtype=np.uint8))], None if fused.flatten else y)
    if fused.flatten:
        b.node("Flatten", [bits], y, axis=1)


def _per_position_window(t: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel offsets and uint8 thresholds for thresholds that differ by position: ``(low, u)``.

    ``y = clamp(s - low_c + 1, 0, 255)`` keeps 254 values of the integer ``s`` per channel exactly,
    so ``y >= u_cp`` is ``s >= t_cp`` for every ``s`` in [-K, K] when each channel's finite thresholds
    span less than that. None where they don't (checked exhaustively, not assumed).
    """
    finite = (t > -k) & (t <= k)
    low = torch.where(finite, t, torch.full_like(t, k + 1)).min(1).values.clamp(max=k)     # (C,)
    u = (t - low.view(-1, 1) + 1).clamp(0, 255)
    s = torch.arange(-k, k + 1).view(-1, 1, 1)
    y = (s - low.view(1, -1, 1) + 1).clamp(0, 255)
    if not bool(((y >= u) == (s >= t)).all()):
        return None
    return low.numpy().astype(np.int32), u.numpy().astype(np.uint8)


def _qlinearconv_window(b: _Builder, spec: NodeSpec, x: str, y: str, w: torch.Tensor, low: np.ndarray,
                        u: np.ndarray, dims: int) -> None:
    """A binary conv whose next layer thresholds each position (a flatten before it): QLinearConv to
    ``clamp(s - low_c + 1)`` in uint8, max pool, flatten, one uint8 compare — no float round trip."""
    one = b.const("one_f", np.array(1.0, dtype=np.float32))
    q = b.node("QLinearConv", [
        x, one, b.const("x_zero_point", np.array(1, dtype=np.uint8)), b.unpacked(w, "int8"), one,
        b.const("w_zero_point", np.array(0, dtype=np.int8)), one,
        b.const("window_zero_point", np.array(1, dtype=np.uint8)), b.const("bias", -low),
    ], **_conv_attrs(spec))
    fused = spec.fused
    assert fused is not None
    if fused.pool is not None:
        q = b.node("MaxPool", [q], **_pool_attrs(fused.pool, dims))
    flat = b.node("Flatten", [q], axis=1)
    b.node("Where", [b.node("GreaterOrEqual", [flat, b.const("threshold", u.reshape(-1))]), *_bit_values(b)], y)


def _int8(b: _Builder, spec: NodeSpec, x: str, y: str, rank: int) -> None:
    """An int8 layer: ``QuantizeLinear`` (uint8, the calibrated scale and zero point), then the integer sum.

    Fused into the next binary layer's bits, a conv is one ``QLinearConv`` whose saturating requantization
    compares the sum with the integer threshold (as for binary convs) and a linear layer a
    ``MatMulInteger`` and one compare; with a real-valued output the int32 sum is cast and scaled by
    ``s_x * s_w`` in float32, as the PyTorch layer computes it (``ConvInteger`` for a conv: slow in ORT,
    but exact, and rare: a conv whose sums stay below 2**24 runs as a float Conv, exact too).
    """
    layer: Any = spec.layer
    zp = b.const("int8_zero_point", np.array(int(layer.input_zero_point), dtype=np.uint8))
    scale = b.const("int8_scale", layer.input_scale.detach().cpu().numpy().astype(np.float32))
    xq = b.node("QuantizeLinear", [x, scale, zp])
    w = spec.weight_signs().to(torch.int64).cpu().numpy().astype(np.int8)
    weight = b.const("weight_int8", w if spec.is_conv else np.ascontiguousarray(w.T))
    fused, dims = spec.fused, rank - 2
    if fused is not None and spec.is_conv:
        _qlinearconv_bits(b, spec, xq, y, zp, weight, fused.thresholds.threshold[:, 0], dims)
        return
    if spec.is_conv and INT8_PRODUCT * int(layer.weight[0].numel()) < 2**24:
        # every partial sum is an integer below 2**24: a float Conv on the dequantized integers computes it
        # exactly, and ORT's float Conv runs several times faster than its ConvInteger
        q = b.node("Sub", [b.node("Cast", [xq], to=TensorProto.FLOAT),
                           b.const("int8_zero_point_f", np.array(float(layer.input_zero_point), dtype=np.float32))])
        s = b.node("Conv", [q, b.node("Cast", [weight], to=TensorProto.FLOAT)], **_conv_attrs(spec))
        s = b.node("Cast", [s], to=TensorProto.INT32)  # keeps ORT from folding the scale into the weights (rounding)
    else:
        s = (b.node("ConvInteger", [xq, weight, zp], **_conv_attrs(spec)) if spec.is_conv
             else b.node("MatMulInteger", [xq, weight, zp]))
    if fused is not None:
        threshold = _per_channel(b, "threshold", fused.thresholds.threshold[:, 0], spec, rank, np.int32)
        _compare_to_bits(b, fused, s, threshold, y, dims)
        return
    _scale_and_bias(b, spec, b.node("Cast", [s], to=TensorProto.FLOAT), y, rank)
