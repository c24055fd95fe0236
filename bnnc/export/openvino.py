"""``export_openvino``: a binarized model -> an OpenVINO IR whose binary layers run XNOR-popcount kernels.

The model is lowered exactly as for ONNX (:mod:`bnnc.export.lowering`) and exported by torch with
one placeholder node per binary layer; OpenVINO's ONNX frontend converts the FP32 parts and, through
a conversion extension, hands each placeholder to :func:`_binary_layer`, which builds it with the
OpenVINO API:

* the input bits: ``FakeQuantize(levels=2, input_low = input_high = t, output 0/1)``, the form the
  CPU plugin executes exactly as a binarization (output -1/+1 loses the bits). FakeQuantize sends
  ``x > t`` to 1, torch's binarizer ``x >= beta``: ``t`` is the float32 just below ``beta``
  (``x > nextafter(beta, -inf)`` is ``x >= beta`` for every float32 ``x``), and ``T - 0.5`` for an
  integer threshold ``T`` on an integer sum;
* the layer: ``BinaryConvolution`` (mode ``xnor-popcount``, ``pad_value`` 0: a padded +-1 input
  contributes 0, as torch's zero padding does), weights stored at 1 bit, least-significant bit
  first within each byte (the order the CPU plugin reads); a Linear layer is a 1x1 one on
  ``(N, K, 1, 1)``, a Conv1d a ``1 x k`` one;
* the output: ``s * alpha + bias`` (a folded BatchNorm too), or, for a fused chain, max pooling
  and ``v = s - (T - 0.5)``, whose sign is the next layer's input bit (its FakeQuantize at 0).

The plugin needs a multiple of 8 input channels and has no groups: such layers compute the same
+-1 sums with a float convolution (exact: small integers), and the export says which and why.
BinaryConvolution needs static shapes: the IR's batch is 1; ``model.reshape`` changes it.

(Over 400 lines, on purpose: one concept — each lowered node built with the OpenVINO API — whose parts,
input bits, XNOR or float sums, output, are small functions that share the traps listed above. Running an
IR is :mod:`bnnc.export.ov_runtime`.)
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bnnc import defaults
from bnnc.data import DataSpec
from bnnc.errors import first_line
from bnnc.export.exporter import (
    OPSET,
    ExportError,
    ExportResult,
    _metadata_dict,
    _torch_export,
    check_inputs,
    example_input,
    prepare,
    require_match,
)
from bnnc.export.lowering import lower
from bnnc.export.nodes import NodeSpec, conv_geometry
from bnnc.export.ov_runtime import IR, PRECISION, OpenVINOSession, openvino_module
from bnnc.export.parity import parity_of
from bnnc.export.runtime import run_ort
from bnnc.outputs import atomic_write


def _u1(signs: torch.Tensor, *, for_binary_convolution: bool) -> Any:
    """+-1 (or real) weights as a u1 Constant, 1 where ``signs >= 0`` (``binarize``'s +1).

    The two readers of u1 disagree on the order of bits within a byte: BinaryConvolution's kernel
    reads the least-significant bit first, OpenVINO's Convert (and its constant accessor) the most
    significant; the wrong one gives silently wrong results.
    """
    ov = openvino_module()
    bits = (signs.detach().cpu().reshape(-1) >= 0).numpy()
    t = ov.Tensor(ov.Type.u1, ov.Shape(list(signs.shape)))
    t.data[:] = np.packbits(bits, bitorder="little" if for_binary_convolution else "big")
    return ov.op.Constant(t, shared_memory=False)


def below(t: np.ndarray) -> np.ndarray:
    """The float32 just below ``t``: ``x > below(t)`` is ``x >= t`` for float32 ``x``."""
    t = np.asarray(t, dtype=np.float32)
    return np.nextafter(t, np.float32(-np.inf)).astype(np.float32)


@dataclass
class _Layers:
    """What became of each binary layer, for the export's notes."""

    xnor: list[str] = field(default_factory=list)
    float_sums: list[str] = field(default_factory=list)
    int8: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bit_values: Any = None  # FakeQuantize's output 0 and 1, one pair of constants for the whole model

    def zero_one(self) -> tuple[Any, Any]:
        if self.bit_values is None:
            op = openvino_module().opset13
            self.bit_values = (op.constant(np.float32(0)), op.constant(np.float32(1)))
        return self.bit_values


def _rank(v: Any) -> int:
    shape = v.get_partial_shape() if hasattr(v, "get_partial_shape") else v.get_output_partial_shape(0)
    return int(shape.rank.get_length())


def _fake_quantize(x: Any, low: Any, record: _Layers) -> Any:
    """0/1 bits ``x > low`` for the BinaryConvolution right after it (x is 4-d, ``low`` broadcasts).

    Only ever in front of a BinaryConvolution: the plugin then executes it as a binarization into
    the convolution's packed input. A levels-2 FakeQuantize whose output goes anywhere else (a pool,
    a reshape, the model's output) corrupted memory in openvino 2026.4.
    """
    op = openvino_module().opset13
    c = op.constant(np.asarray(low, dtype=np.float32))
    return op.fake_quantize(x, c, c, *record.zero_one(), 2)


def _channel_shape(v: np.ndarray, rank: int, channel_dim: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast along ``channel_dim`` of a rank-``rank`` tensor."""
    v = np.asarray(v, dtype=np.float32)
    if v.size == 1:
        return v.reshape(())
    shape = [1] * rank
    shape[channel_dim] = -1
    return v.reshape(shape)


def _can_xnor(spec: NodeSpec) -> str | None:
    """Why the plugin's BinaryConvolution can't run this layer (None: it can)."""
    layer: Any = spec.layer
    if spec.is_conv:
        if layer.groups != 1:
            return f"{layer.groups} groups (BinaryConvolution has none)"
        if layer.weight.dim() not in (3, 4):
            return "a 3-d convolution"
        if layer.in_channels % 8:
            return f"{layer.in_channels} input channels, not a multiple of 8"
        return None
    if layer.in_features % 8:
        return f"{layer.in_features} input features, not a multiple of 8"
    return None


def _binary_layer(ctx: Any, spec: NodeSpec, record: _Layers) -> list[Any]:
    """The OpenVINO subgraph of one ``bnnc::Binary`` node (see the module docstring).

    A fused node hands the next one ``v``, a float whose sign is the bit (``v > 0`` is +1), not the
    bits themselves: the next node's FakeQuantize at 0 turns it into bits right in front of its
    BinaryConvolution, the only place the plugin takes such bits.
    """
    ov = openvino_module()
    op = ov.opset13
    x = ctx.get_input(0)
    w = spec.weight_signs()
    binary_in = spec.input in ("float", "bits")
    why = _can_xnor(spec) if binary_in else None
    if why is not None:
        record.notes.append(f"{spec.name}: {why}: its +-1 sums run as a float convolution (exact), "
                            "not XNOR-popcount")
    low = None if spec.int8 else _input_threshold(spec)  # the input's bit is x > low

    if spec.input == "pixels":
        x = op.convert(x, "f32")
        if spec.flatten_input:
            x = op.reshape(x, op.constant(np.array([0, -1], dtype=np.int64)), special_zero=True)
    if spec.int8:
        s = _int8_sums(x, spec, w)
        record.int8.append(spec.name)
    elif binary_in and why is None:
        s = _xnor(x, spec, w, low, record)
        record.xnor.append(spec.name)
    else:
        if binary_in:
            record.float_sums.append(spec.name)
            channel_dim = 1 if spec.is_conv else _rank(x) - 1
            cond = op.greater(x, op.constant(_channel_shape(low, _rank(x), channel_dim)))
            x = op.select(cond, np.float32(1), np.float32(-1))
        s = _float_sums(x, spec, w)

    rank = _rank(s)
    channel_dim = 1 if spec.is_conv else rank - 1
    fused = spec.fused
    if fused is None:
        scale, shift = spec.output_affine()
        if scale is not None:
            s = op.multiply(s, op.constant(_channel_shape(scale.float().numpy(), rank, channel_dim)))
        if shift is not None:
            s = op.add(s, op.constant(_channel_shape(shift.float().numpy(), rank, channel_dim)))
        return [s.output(0)]
    integer = spec.input != "real"  # sums of bits or of pixels: integers, exact in float32
    t = fused.thresholds.threshold
    if fused.pool is not None:  # max pooling commutes with the per-channel increasing threshold
        s = _max_pool(s, fused.pool, rank)
    if fused.per_position:
        s = op.reshape(s, op.constant(np.array([0, -1], dtype=np.int64)), special_zero=True)
        t, channel_dim, rank = t.flatten(), 1, 2
    else:
        t = t[:, 0]
    edge = (t.double() - 0.5).float().numpy() if integer else below(t.float().numpy())
    v = op.subtract(s, op.constant(_channel_shape(edge, rank, channel_dim)))
    if fused.flatten and not fused.per_position:
        v = op.reshape(v, op.constant(np.array([0, -1], dtype=np.int64)), special_zero=True)
    return [v.output(0)]


def _input_threshold(spec: NodeSpec) -> np.ndarray:
    """``low`` with the input bit ``x > low``: below beta for a real input, 0 for a fused one's ``v``."""
    if spec.input == "bits":
        return np.zeros((), np.float32)
    binarizer = spec.layer.input_binarizer
    if binarizer is None or binarizer.beta is None:
        return below(np.zeros((), np.float32))
    return below(binarizer.beta.detach().float().numpy())


def _xnor(x: Any, spec: NodeSpec, w: torch.Tensor, low: np.ndarray, record: _Layers) -> Any:
    """FakeQuantize -> BinaryConvolution; a Linear layer as a 1x1 convolution on (M, K, 1, 1)."""
    ov = openvino_module()
    op = ov.opset13
    lead = None
    if spec.is_conv:
        kernel = w
        strides, begin, end, dilations = conv_geometry(spec.layer)
        if w.dim() == 3:
            x, kernel = op.unsqueeze(x, op.constant(np.array([2], dtype=np.int64))), w.unsqueeze(2)
    else:
        lead = op.shape_of(x, "i64")
        x = op.reshape(x, op.constant(np.array([-1, w.shape[1], 1, 1], dtype=np.int64)), special_zero=False)
        kernel, strides, begin, end, dilations = w.reshape(*w.shape, 1, 1), [1, 1], [0, 0], [0, 0], [1, 1]
    bits = _fake_quantize(x, _channel_shape(low, 4, 1), record)
    weights = _u1(kernel, for_binary_convolution=True)
    s = ov.opset1.binary_convolution(bits, weights, strides, begin, end, dilations, "xnor-popcount", 0.0,
                                     name=f"{spec.name}/BinaryConvolution")
    if spec.is_conv and w.dim() == 3:
        return op.squeeze(s, op.constant(np.array([2], dtype=np.int64)))
    if lead is not None:
        return _restore_lead(s, lead, int(w.shape[0]))
    return s


def _restore_lead(s: Any, lead: Any, out_channels: int) -> Any:
    """(M, O, 1, 1) -> (*lead[:-1], O)."""
    op = openvino_module().opset13
    head = op.slice(lead, np.array([0], dtype=np.int64), np.array([-1], dtype=np.int64), np.array([1], dtype=np.int64))
    shape = op.concat([head, op.constant(np.array([out_channels], dtype=np.int64))], 0)
    return op.reshape(s, shape, special_zero=False)


_VIA_U4 = "bnnc.u4:"


def _through_u4(model: Any) -> None:
    """Put a u4 step into each marked ``Convert(u1 -> f32)`` of a Linear layer's weights.

    Added after ``convert_model``, whose constant folding would store the u4 weights (4x the bytes);
    the CPU plugin folds the u1 -> u4 step when it compiles and keeps the u4 weights compressed.
    """
    op = openvino_module().opset13
    for node in model.get_ordered_ops():
        if node.get_type_name() == "Convert" and node.get_friendly_name().startswith(_VIA_U4):
            source = node.input_value(0)
            node.input(0).replace_source_output(op.convert(source, "u4").output(0))
            node.set_friendly_name(node.get_friendly_name()[len(_VIA_U4):] + "/weights")


def _float_sums(x: Any, spec: NodeSpec, w: torch.Tensor) -> Any:
    """The sums of a real-valued or +-1 input with float +-1 weights (stored at 1 bit): exact for +-1 inputs.

    A Linear layer's weights go through u4, ``(u4 - 0.5) * 2``: the CPU plugin keeps that form as a
    compressed fully connected layer, reading 4 bits a weight instead of 32 (the paper's real-valued
    first layer: 2.4x faster at batch 1 here); the products and sums stay float32. Not with an odd
    number of input features: the plugin's u4 kernel (openvino 2026.4) then computes wrong sums from
    9 features up (a tabular model's 13, a Mixer's 49 tokens); those weights are decompressed to f32
    when the IR is compiled (the file still holds 1 bit a weight).
    """
    op = openvino_module().opset13
    kernel = w.unsqueeze(2) if spec.is_conv and w.dim() == 3 else w
    bits = _u1(kernel, for_binary_convolution=False)
    if not spec.is_conv:  # u1 -> f32 for now: _through_u4 puts the u4 step in after conversion
        name = _VIA_U4 + spec.name if w.shape[1] % 2 == 0 else f"{spec.name}/weights"
        signs = op.multiply(op.subtract(op.convert(bits, "f32", name=name), np.float32(0.5)), np.float32(2))
        return op.matmul(x, signs, False, True)
    signs = op.subtract(op.multiply(op.convert(bits, "f32"), np.float32(2)), np.float32(1))
    return _convolve(x, signs, spec, tuple(kernel.shape))


def _int8_sums(x: Any, spec: NodeSpec, w: torch.Tensor) -> Any:
    """An int8 layer's integer sum: ``q(x) - z`` as float integers (Divide, Round half to even, as ORT's
    QuantizeLinear and the PyTorch layer), int8 weights stored as i8, summed in f32 — exact while a sum stays
    below 2**24 (first layers: 255 * 63 * 9 per input channel), within one rounding beyond."""
    op = openvino_module().opset13
    layer: Any = spec.layer
    scale = np.float32(layer.input_scale.detach().cpu())
    zero = np.float32(layer.input_zero_point.detach().cpu())
    q = op.add(op.round(op.divide(x, op.constant(scale)), "half_to_even"), op.constant(zero))
    q = op.subtract(op.clamp(q, 0.0, 255.0), op.constant(zero))
    kernel = w.unsqueeze(2) if spec.is_conv and w.dim() == 3 else w
    weights = op.convert(op.constant(kernel.to(torch.int64).cpu().numpy().astype(np.int8)), "f32")
    if not spec.is_conv:
        return op.matmul(q, weights, False, True)
    return _convolve(q, weights, spec, tuple(kernel.shape))


def _convolve(x: Any, weights: Any, spec: NodeSpec, kernel_shape: tuple[int, ...]) -> Any:
    """``x`` convolved as ``spec``'s layer convolves (groups; a Conv1d as a 1 x k one on an unsqueezed input) with
    ``weights``, an f32 tensor shaped ``kernel_shape`` (4-D: a Conv1d's kernel has a unit height)."""
    op = openvino_module().opset13
    layer: Any = spec.layer
    conv1d = layer.weight.dim() == 3
    if conv1d:
        x = op.unsqueeze(x, op.constant(np.array([2], dtype=np.int64)))
    strides, begin, end, dilations = conv_geometry(spec.layer)
    if layer.groups == 1:
        s = op.convolution(x, weights, strides, begin, end, dilations, name=f"{spec.name}/Convolution")
    else:
        g = int(layer.groups)
        shape = [g, kernel_shape[0] // g, *kernel_shape[1:]]
        grouped = op.reshape(weights, op.constant(np.array(shape, dtype=np.int64)), special_zero=False)
        s = op.group_convolution(x, grouped, strides, begin, end, dilations, name=f"{spec.name}/GroupConvolution")
    return op.squeeze(s, op.constant(np.array([2], dtype=np.int64))) if conv1d else s


def _max_pool(s: Any, pool: nn.Module, rank: int) -> Any:
    dims = rank - 2

    def tup(v: Any) -> list[int]:
        return list(v) if isinstance(v, (tuple, list)) else [int(v)] * dims

    stride = pool.stride if pool.stride is not None else pool.kernel_size
    rounding = "ceil_torch" if pool.ceil_mode else "floor"
    return openvino_module().opset14.max_pool(s, tup(stride), tup(pool.dilation), tup(pool.padding), tup(pool.padding),
                                  tup(pool.kernel_size), rounding).output(0)


def to_openvino(model: nn.Module, input_shape: tuple[int, ...], *, uint8_input: bool = False,
                metadata: dict[str, str] | None = None) -> tuple[IR, _Layers, int]:
    """The OpenVINO IR (in memory, batch 1) of the binarized ``model``, what became of its layers and
    the number of binary layers. ``metadata`` goes into the IR's ``rt_info`` under ``bnnc``."""
    ov = openvino_module()
    from openvino.frontend.onnx import ConversionExtension

    model = model.cpu().float().eval()
    example = example_input(tuple(input_shape), uint8=uint8_input)
    lowered = lower(model, example, integer=True)
    proto = _torch_export(lowered.model, example, OPSET, custom=bool(lowered.specs))
    record = _Layers(notes=list(lowered.notes))
    ext = ConversionExtension("Binary", "bnnc", lambda ctx: _binary_layer(
        ctx, lowered.specs[ctx.get_attribute("index")], record))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, xml_path = Path(tmp) / "model.onnx", Path(tmp) / "model.xml"
        onnx_path.write_bytes(proto.SerializeToString())
        try:
            element = ov.Type.u8 if uint8_input else ov.Type.f32
            converted = ov.convert_model(onnx_path, input=[([1, *input_shape], element)],
                                         extension=[ext])
        except ExportError:
            raise
        except Exception as e:  # noqa: BLE001 - the converter's messages are pages long
            cause = e.__cause__ or e.__context__
            if isinstance(cause, ExportError):
                raise cause from None
            raise ExportError(f"OpenVINO could not convert the model: {first_line(e, 200, with_type=False)}",
                              "re-run with --debug; --format onnx exports it for ONNX Runtime") from e
        _through_u4(converted)
        for key, value in (metadata or {}).items():
            converted.set_rt_info(value, ["bnnc", key])
        # Serialized and read back before any use: the model as converted in memory crashed the CPU
        # plugin at inference (openvino 2026.4), the same model read from its files did not.
        ov.save_model(converted, xml_path, compress_to_fp16=False)
        ir = IR(_compact(xml_path.read_bytes()), xml_path.with_suffix(".bin").read_bytes())
    return ir, record, len(lowered.specs)


def _compact(xml: bytes) -> bytes:
    """The IR's XML without the indentation between tags: a fifth of its bytes, nothing a reader uses."""
    return re.sub(rb">\s+<", b"><", xml)


def export_openvino(
    model: str | os.PathLike[str] | nn.Module,
    output: str | os.PathLike[str] | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    check: bool = True,
    data: DataSpec | None = None,
    check_samples: int = defaults.CHECK_SAMPLES,
    uint8_input: bool = False,
    preprocessing: dict[str, Any] | None = None,
    overwrite: bool = False,
    trust_model: bool = False,
) -> ExportResult:
    """Export the binarized ``model`` to an OpenVINO IR (``NAME.xml`` + ``NAME.bin``) whose binary layers
    run the CPU plugin's XNOR-popcount kernels.

    Like :func:`~bnnc.export.export_onnx`: ``output`` defaults to ``NAME.xml`` beside a checkpoint;
    with ``check`` the IR runs in OpenVINO (f32 precision, see :data:`PRECISION`) on ``check_samples``
    inputs and must match the PyTorch model, or nothing is written. The IR's batch is 1.
    """

    openvino_module()
    if output is not None and Path(output).suffix != ".xml":
        raise ExportError(f"an OpenVINO IR is NAME.xml with its weights in NAME.bin, not {Path(output).name}",
                          "pass -o NAME.xml")
    src = prepare(model, output, ".xml", input_shape=input_shape, check=check, data=data, check_samples=check_samples,
                  uint8_input=uint8_input, preprocessing=preprocessing, overwrite=overwrite, trust_model=trust_model,
                  side_suffixes=(".bin",))
    meta = _metadata_dict(src.loaded, "xnor-popcount", src.input_shape, src.preprocessing, uint8_input)
    meta["bnnc.compile_with"] = json.dumps(PRECISION)
    ir, record, binary = to_openvino(src.net, src.input_shape, uint8_input=uint8_input, metadata=meta)
    result = ExportResult(
        path=None, onnx_bytes=ir.size, theoretical_bytes=len(ir.bin), mode="xnor-popcount", uint8_input=uint8_input,
        binary_nodes=binary, fused_chains=0, notes=[*src.notes, *record.notes], format="openvino",
        xnor_layers=len(record.xnor),
    )
    if check:
        x, described = check_inputs(src.input_shape, src.splits, check_samples, uint8_input)
        got = run_ort(OpenVINOSession(ir), x.numpy())
        parity = parity_of(got, src.net, x, inputs=described, runtime="openvino")
        result.parity.append(parity)
        require_match(parity, "OpenVINO")
    if src.outputs:
        xml, weights = src.outputs
        atomic_write(weights, lambda f: f.write(ir.bin), overwrite=overwrite)
        try:
            result.path = atomic_write(xml, lambda f: f.write(ir.xml), overwrite=overwrite)
        except BaseException:
            weights.unlink(missing_ok=True)  # ours: written just now
            raise
        result.files = [xml, weights]
    return result


