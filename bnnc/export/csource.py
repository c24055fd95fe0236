"""A binarized model as dependency-free C99: one ``NAME.h`` and one ``NAME.c``, for microcontrollers and hosts.

The model is lowered exactly as for ONNX and OpenVINO (:mod:`bnnc.export.lowering`: every binary layer
one node, the chains between binary layers folded into integer thresholds), traced with ``torch.fx`` and
its shapes propagated at batch 1; each node becomes one step of a straight-line ``NAME_predict``:

* a binary layer: bit-packed input (64 channels a word, per position), XNOR-popcount against ``const``
  1-bit weights (flash), and either the folded threshold compare straight into the next layer's packed
  bits (max pooling as OR of bits) or a real-valued output ``s * scale + shift``; the paper's first
  layer (real input, +-1 weights) sums signed inputs; an int8 layer quantizes its input as torch does;
* the FP32 layers kept (convolutions, Linear, BatchNorm, activations, pooling, adds, concatenations,
  permutes) as plain loops.

Activations live in three statically sized arenas (float, 64-bit words, int32) whose slots are reused
once a tensor is dead (first fit over lifetimes): no malloc, and the RAM the header states. The
kernels are :file:`c_runtime.h`, copied into ``NAME.c``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from bnnc.errors import ExportError
from bnnc.export.batchnorm import affine_as_torch
from bnnc.export.lowering import lower
from bnnc.export.nodes import BinaryNode, NodeSpec, conv_geometry
from bnnc.export.pixels import Normalize
from bnnc.int8 import Int8Layer
from bnnc.layers import BinaryLayer
from bnnc.shift import ShiftBatchNorm, ap2
from bnnc.version import __version__

WORD = 64
BLOCK = 8  # output channels per XNOR block (one AVX-512 vector of 64-bit counts)
CHUNK = 64  # outputs computed at a time (BNNC_CHUNK): the scratch holds one chunk of sums
FLT_MAX = float(np.finfo(np.float32).max)


def runtime_source() -> str:
    """The shared kernels, copied into every generated ``NAME.c``."""
    return resources.files("bnnc.export").joinpath("c_runtime.h").read_text()


def c_name(text: str) -> str:
    """A C identifier from a model's name: ``mlp-bnnc`` -> ``mlp_bnnc``."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", text).strip("_").lower() or "model"
    return f"m_{name}" if name[0].isdigit() else name


@dataclass(frozen=True)
class BitsLayout:
    """Packed bits of ``channels`` x ``positions``: at each position the channels of each group in
    ``wpg`` words (``cg`` channels a group)."""

    positions: int
    channels: int
    groups: int = 1

    @property
    def cg(self) -> int:
        return self.channels // self.groups

    @property
    def wpg(self) -> int:
        return -(-self.cg // WORD)

    @property
    def wpp(self) -> int:
        return self.groups * self.wpg

    @property
    def words(self) -> int:
        return self.positions * self.wpp

    def c(self) -> str:
        return f"{{{self.positions}, {self.cg}, {self.wpg}, {self.wpp}}}"


@dataclass
class Tensor:
    name: str
    ctype: str                       # "float", "uint64_t", "int32_t" or "uint8_t" (the pixel input)
    size: int                        # elements
    shape: tuple[int, ...] = ()      # without the batch (NCHW); bits: the torch shape they stand for
    layout: BitsLayout | None = None
    alias: Tensor | None = None      # a view (flatten, reshape...) of another tensor's storage
    fixed: str | None = None         # "input" / "logits": the caller's buffer
    first: int = 0
    last: int = 0
    offset: int = 0                  # in its arena (roots)
    view_offset: int = 0             # elements from the start of ``alias`` (a channel slice)
    batch_axis: int = 0              # where torch has the batch: 1 in an LSTM's final state (layers, batch, hidden)

    def root(self) -> Tensor:
        return self.alias.root() if self.alias is not None else self

    def start(self) -> int:
        """Elements from the start of its root's storage."""
        return self.view_offset + (self.alias.start() if self.alias is not None else 0)

    def ref(self) -> str:
        return f"@{self.name}@"


_ARENAS = {"float": "bnnc_f", "uint64_t": "bnnc_w", "int32_t": "bnnc_i"}


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (BinaryNode, Normalize, ShiftBatchNorm)) or super().is_leaf_module(m, qualname)


def _graph_module(model: nn.Module) -> fx.GraphModule:
    if isinstance(model, fx.GraphModule):
        return model
    try:
        return fx.GraphModule(model, _Tracer().trace(model))
    except Exception as e:  # noqa: BLE001 - any tracing failure: one line
        raise ExportError(f"the C export needs a model torch.fx can trace ({type(e).__name__}: {str(e)[:160]})",
                          "export to ONNX or OpenVINO instead, or make the forward traceable") from None


def _pairs(v: Any, n: int) -> tuple[int, ...]:
    return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v),) * n


_PAD_MODES: dict[type[nn.Module], int] = {
    nn.ReflectionPad1d: 0, nn.ReflectionPad2d: 0, nn.ReplicationPad1d: 1, nn.ReplicationPad2d: 1,
    nn.CircularPad1d: 2, nn.CircularPad2d: 2, nn.ConstantPad1d: 3, nn.ConstantPad2d: 3, nn.ZeroPad1d: 3,
    nn.ZeroPad2d: 3,
}
"""The padding modules (a convolution's ``padding_mode`` or an ``F.pad`` call, made modules by the lowering, or the
user's own) and bnnc_pad's mode."""


def _hw(shape: tuple[int, ...]) -> tuple[int, int]:
    """(H, W) of an NCHW shape without batch; a 1-d one (C, L) is (1, L)."""
    return (1, shape[1]) if len(shape) == 2 else (shape[1], shape[2])


def _float_literal(v: float) -> str:
    v = float(np.float32(v))
    if math.isnan(v) or math.isinf(v):
        raise ExportError("the model has a non-finite parameter; C can't store it",
                          "check the checkpoint (a BatchNorm with zero variance and eps 0?)")
    return np.format_float_scientific(np.float32(v), unique=True, trim="-") + "f"


class Emitter:
    """Collects constants, tensors and steps, then allocates the arenas and writes the C source."""

    def __init__(self, name: str, input_size: int) -> None:
        self.name = name
        self.input_size = input_size
        self.consts: dict[tuple[str, bytes], str] = {}
        self.const_lines: list[str] = []
        self.const_bytes = 0
        self.tensors: list[Tensor] = []
        self.steps: list[str] = []
        self.math = False
        self.inplace: list[tuple[int, Tensor, Tensor]] = []  # (step, x, out): out may take x's storage
        self.pixel_slot: Tensor | None = None
        self.scratch = {"si": 1, "sf": 1, "pw": 1, "pf": 1, "ph": 1}

    # -- constants -------------------------------------------------------------------------------
    def const(self, ctype: str, values: np.ndarray | list[Any], hint: str) -> str:
        arr = np.asarray(values)
        dtype = {"float": np.float32, "uint64_t": np.uint64, "int32_t": np.int32, "int8_t": np.int8,
                 "uint16_t": np.uint16, "int": np.int32}[ctype]
        arr = arr.astype(dtype).reshape(-1)
        key = (ctype, arr.tobytes())
        if key in self.consts:
            return self.consts[key]
        name = f"bnnc_{c_name(hint)}_{len(self.consts)}"
        if ctype == "float":
            items = [_float_literal(v) for v in arr]
        elif ctype == "uint64_t":
            items = [f"0x{int(v):016x}ULL" for v in arr]
        else:
            items = [str(int(v)) for v in arr]
        lines = [", ".join(items[i:i + 8]) for i in range(0, len(items), 8)] or ["0"]
        body = ",\n    ".join(lines)
        self.const_lines.append(f"static const {ctype} {name}[{max(len(arr), 1)}] = {{\n    {body}\n}};")
        self.const_bytes += arr.nbytes
        self.consts[key] = name
        return name

    # -- tensors ---------------------------------------------------------------------------------
    def tensor(self, ctype: str, size: int, shape: tuple[int, ...] = (), layout: BitsLayout | None = None,
               fixed: str | None = None, alias: Tensor | None = None) -> Tensor:
        t = Tensor(f"t{len(self.tensors)}", ctype, int(size), tuple(shape), layout, alias, fixed,
                   first=len(self.steps), last=len(self.steps))
        self.tensors.append(t)
        return t

    def step(self, code: str, *tensors: Tensor) -> None:
        """One statement of ``predict``, reading or writing ``tensors`` (their lifetimes reach it)."""
        for t in tensors:
            r = t.root()
            r.last = max(r.last, len(self.steps))
            r.first = min(r.first, len(self.steps))
        self.steps.append(code)

    def need_scratch(self, **sizes: int) -> None:
        for k, v in sizes.items():
            self.scratch[k] = max(self.scratch[k], int(v))

    # -- allocation and output -------------------------------------------------------------------
    def allocate(self) -> dict[str, int]:
        """First-fit offsets per arena over the tensors' lifetimes; the arenas' sizes in elements. An
        elementwise step whose input dies there writes over it."""
        for step, x, out in self.inplace:
            r = x.root()
            if (r.fixed is None and r.last == step and out.alias is None and out.fixed is None
                    and r.ctype == out.ctype and r.size == out.size):
                out.alias = r
                r.last = max(r.last, out.last)
        sizes = {k: 0 for k in _ARENAS}
        placed: dict[str, list[Tensor]] = {k: [] for k in _ARENAS}
        for t in sorted((t for t in self.tensors if t.alias is None and t.fixed is None),
                        key=lambda t: (t.first, -t.size)):
            others = [o for o in placed[t.ctype] if not (o.last < t.first or t.last < o.first)]
            offset = 0
            for o in sorted(others, key=lambda o: o.offset):
                if offset + t.size <= o.offset:
                    break
                offset = max(offset, o.offset + o.size)
            t.offset = offset
            placed[t.ctype].append(t)
            sizes[t.ctype] = max(sizes[t.ctype], offset + t.size)
        return sizes

    def expression(self, t: Tensor) -> str:
        r, at = t.root(), t.start()
        if r.fixed == "input":
            return f"(input + {at})" if at else "input"
        if r.fixed == "logits":
            return f"(out + {at})" if at else "out"
        return f"({_ARENAS[r.ctype]} + {r.offset + at})"

    def source(self, header: str, input_desc: str, outputs: int, pixels: str | None) -> tuple[str, str, dict[str, int]]:
        sizes = self.allocate()
        body = "\n".join(self.steps)
        for t in self.tensors:
            body = body.replace(t.ref(), self.expression(t))
        ram = {f"{k}_bytes": v * {"float": 4, "uint64_t": 8, "int32_t": 4}[k] for k, v in sizes.items()}
        scratch_bytes = (self.scratch["si"] * 4 + self.scratch["sf"] * 4 + self.scratch["pw"] * 16
                         + self.scratch["pf"] * 4 + self.scratch["ph"] * 2)
        ram_total = sum(ram.values()) + scratch_bytes + (outputs * 4)
        name, upper = self.name, self.name.upper()
        arenas = "\n".join(f"static {ctype} {var}[{sizes[ctype]}];" for ctype, var in _ARENAS.items() if sizes[ctype])
        scratch = (f"static int32_t bnnc_si[{self.scratch['si']}];\nstatic float bnnc_sf[{self.scratch['sf']}];\n"
                   f"static uint64_t bnnc_pw[{self.scratch['pw']}];\nstatic float bnnc_pf[{self.scratch['pf']}];\n"
                   f"static uint64_t bnnc_pm[{self.scratch['pw']}];\nstatic int16_t bnnc_ph[{self.scratch['ph']}];\n"
                   "static const bnnc_scratch bnnc_S = {bnnc_si, bnnc_sf, bnnc_pw, bnnc_pf, bnnc_pm, bnnc_ph};")
        pixel_fn = ""
        if pixels is not None:
            pixel_fn = pixels.replace("@NAME@", name)
        c = "\n".join([
            header,
            f'#include "{name}.h"',
            "#include <float.h>",
            *(["#include <math.h>", "#define BNNC_MATH 1"] if self.math else []),
            "",
            runtime_source(),
            "",
            "/* ---- weights, thresholds and parameters (const: flash) ---- */",
            *self.const_lines,
            "",
            "/* ---- activations (RAM): slots reused once a tensor is dead ---- */",
            arenas,
            scratch,
            f"static float bnnc_logits[{outputs}];",
            "",
            "static int bnnc_run(const float *input, float *logits) {",
            "    float *out = logits ? logits : bnnc_logits;",
            *(["    int best = 0, i;", body, f"    for (i = 1; i < {upper}_OUTPUTS; ++i)",
               "        if (out[i] > out[best]) best = i;", "    return best;"] if outputs > 1 else
              [body, "    return out[0] > 0.0f; /* one logit: class 1 where it is > 0 */"]),
            "}",
            "",
            f"int {name}_predict(const float *input, float *logits) {{",
            "    return bnnc_run(input, logits);",
            "}",
            pixel_fn.replace("@SLOT@", self.expression(self.pixel_slot)) if self.pixel_slot else pixel_fn,
        ]) + "\n"
        h = "\n".join([
            header,
            f"#ifndef {upper}_H",
            f"#define {upper}_H",
            "",
            "#include <stdint.h>",
            "",
            "#ifdef __cplusplus",
            'extern "C" {',
            "#endif",
            "",
            f"/* Input: {input_desc}. */",
            f"#define {upper}_INPUTS {self.input_size}",
            f"#define {upper}_OUTPUTS {outputs}",
            f"/* Flash: {self.const_bytes} bytes of weights and parameters. RAM: {ram_total} bytes of statically",
            "   allocated activations and scratch (no malloc; the stack holds a few words). */",
            f"#define {upper}_WEIGHT_BYTES {self.const_bytes}",
            f"#define {upper}_RAM_BYTES {ram_total}",
            "",
            f"/* Writes the {outputs} outputs (logits) to `logits` (or keeps them inside when NULL) and returns\n"
            "   the index of the largest. Not reentrant: one call at a time (static buffers). */" if outputs > 1 else
            "/* Writes the one output (a logit) to `logits` (or keeps it inside when NULL) and returns the class: 1\n"
            "   where the logit is > 0, else 0. Not reentrant: one call at a time (static buffers). */",
            f"int {name}_predict(const float *input, float *logits);",
            *(["/* The same on raw 8-bit pixels: the recorded preprocessing runs first. */",
               f"#define {upper}_HAS_U8 1",
               f"int {name}_predict_u8(const uint8_t *pixels, float *logits);"] if pixels else []),
            "",
            "#ifdef __cplusplus",
            "}",
            "#endif",
            f"#endif /* {upper}_H */",
        ]) + "\n"
        stats = {"weight_bytes": self.const_bytes, "ram_bytes": ram_total, "steps": len(self.steps)}
        return h, c, stats


def _returns_indices(node: fx.Node) -> bool:
    """Whether a call of ``F.adaptive_max_pool*d`` asks for the indices too."""
    return bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("return_indices", False))


def _numel(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape)) if shape else 1


@dataclass
class Program:
    """The generated C (header and source), what it computes with, and how big it is."""

    name: str
    header: str
    source: str
    input_shape: tuple[int, ...]
    outputs: int
    weight_bytes: int
    ram_bytes: int
    binary_layers: int
    pixels: bool
    notes: list[str] = field(default_factory=list)


def generate(model: nn.Module, input_shape: tuple[int, ...], name: str, *, preprocessing: dict[str, Any] | None = None,
             comment: str = "") -> Program:
    """The C program of the binarized ``model`` (CPU, eval), taking one ``input_shape`` sample."""
    from torch.fx.passes.shape_prop import ShapeProp

    from bnnc.export.exporter import example_input

    model = model.cpu().float().eval()
    lowered = lower(model, example_input(tuple(input_shape)), integer=True)
    gm = _graph_module(lowered.model)
    with torch.no_grad():
        ShapeProp(gm).propagate(example_input(tuple(input_shape), n=1))
    em = Emitter(c_name(name), _numel(tuple(input_shape)))
    builder = _Builder(gm, em, lowered.specs)
    outputs = builder.run(tuple(input_shape))
    header = (f"/* {em.name}: generated by bnnc {__version__}{' from ' + comment if comment else ''}.\n"
              "   C99; no malloc; depends on <stdint.h>, <string.h>, <float.h>"
              + (", <math.h> (link with -lm)" if em.math else "") + ". */")
    pixels = None
    if preprocessing:
        pixels = _pixel_function(preprocessing, tuple(input_shape))
        # the pixels' float values live in the float arena while the model reads its input
        readers = [t for t in em.tensors if t.root().fixed == "input"]
        em.pixel_slot = em.tensor("float", em.input_size, tuple(input_shape))
        em.pixel_slot.first, em.pixel_slot.last = 0, max(t.root().last for t in readers)
    h, c, stats = em.source(header, f"float32, shape {list(input_shape)} (preprocessed as in training)",
                            outputs, pixels)
    return Program(em.name, h, c, tuple(input_shape), outputs, stats["weight_bytes"], stats["ram_bytes"],
                   len(lowered.specs), pixels is not None, list(lowered.notes))


def _pixel_function(preprocessing: dict[str, Any], input_shape: tuple[int, ...]) -> str:
    """``NAME_predict_u8``: ``(p * pixel_scale - mean) / std`` per channel, in float32 as torch, then predict."""
    from bnnc.data import Preprocessing

    pre = Preprocessing.from_dict(preprocessing)
    channels = input_shape[0]
    inner = _numel(input_shape[1:])
    mean = np.broadcast_to(np.asarray(pre.mean, np.float32), (channels,))
    std = np.broadcast_to(np.asarray(pre.std, np.float32), (channels,))
    scale = _float_literal(pre.pixel_scale)
    body = "\n".join([
        "",
        "int @NAME@_predict_u8(const uint8_t *pixels, float *logits) {",
        "    float *x = @SLOT@;",
        f"    static const float mean[{channels}] = {{{', '.join(_float_literal(v) for v in mean)}}};",
        f"    static const float std[{channels}] = {{{', '.join(_float_literal(v) for v in std)}}};",
        "    int c, i;",
        f"    for (c = 0; c < {channels}; ++c)",
        f"        for (i = 0; i < {inner}; ++i)",
        f"            x[c * {inner} + i] = ((float)pixels[c * {inner} + i] * {scale} - mean[c]) / std[c];",
        "    return bnnc_run(x, logits);",
        "}",
    ])
    return body


_VIEWS_METHODS = {"view", "reshape", "flatten", "contiguous", "squeeze", "unsqueeze", "view_as", "reshape_as"}
_VIEW_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Flatten, nn.Unflatten)
_BINARY_OPS: dict[Any, int] = {operator.add: 0, torch.add: 0, operator.sub: 1, torch.sub: 1, operator.mul: 2,
                               torch.mul: 2, operator.truediv: 3, torch.div: 3, operator.iadd: 0, operator.imul: 2}
_REDUCTIONS: dict[Any, str] = {torch.mean: "mean", torch.sum: "sum", torch.amax: "amax", torch.amin: "amin",
                               torch.max: "max", torch.min: "min"}
_UNARY_FUNCTIONS: dict[Any, str] = {F.relu: "relu", torch.relu: "relu", torch.tanh: "tanh", torch.sigmoid: "sigmoid",
                                    F.sigmoid: "sigmoid", F.tanh: "tanh", F.relu6: "relu6", F.silu: "silu",
                                    F.gelu: "gelu", F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid",
                                    F.elu: "elu", F.leaky_relu: "leaky_relu", F.hardtanh: "hardtanh",
                                    F.selu: "selu", torch.selu: "selu", F.celu: "celu", F.softplus: "softplus",
                                    F.mish: "mish", F.softsign: "softsign"}


class _Builder:
    """Walks the traced, lowered graph and emits one step per node."""

    def __init__(self, gm: fx.GraphModule, em: Emitter, specs: list[NodeSpec]) -> None:
        self.gm, self.em, self.specs = gm, em, specs
        self.values: dict[fx.Node, Any] = {}
        self.producers: dict[fx.Node, tuple[NodeSpec, tuple[int, ...]]] = {}  # fused layer -> its bits' shape

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        meta = node.meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            raise ExportError(f"{node.name}: the C export needs one tensor here (a tuple or a non-tensor value)",
                              "export to ONNX or OpenVINO instead")
        shape = tuple(int(s) for s in meta.shape)
        if not shape or shape[0] != 1:
            raise ExportError(f"{node.name}: a tensor without the batch dimension first; the C export runs one "
                              "sample at a time", "export to ONNX or OpenVINO instead")
        return shape[1:]

    def run(self, input_shape: tuple[int, ...]) -> int:
        out_node = None
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self.values[node] = self.em.tensor("float", _numel(input_shape), input_shape, fixed="input")
            elif node.op == "output":
                out_node = node
            elif node.op == "get_attr":
                value = self.gm
                for part in str(node.target).split("."):
                    value = getattr(value, part)
                self.values[node] = value
            else:
                self.values[node] = self.emit(node)
        assert out_node is not None
        result = out_node.args[0]
        if isinstance(result, (tuple, list)):
            if len(result) != 1:
                raise ExportError("the model returns several outputs; the C export writes one",
                                  "export to ONNX or OpenVINO instead")
            result = result[0]
        t = self.values[result]
        if not isinstance(t, Tensor) or t.ctype != "float" or t.layout is not None:
            raise ExportError("the model's output is not a float tensor", "export to ONNX or OpenVINO instead")
        root = t.root()
        if root.fixed == "input" or t.start() or t.size != root.size:  # the input itself, or a slice: copy
            out = self.em.tensor("float", t.size, t.shape, fixed="logits")
            self.em.step(f"    memcpy({out.ref()}, {t.ref()}, sizeof(float) * {t.size});", out, t)
        else:
            root.fixed = "logits"
        return t.size

    # ---------------------------------------------------------------------------------------------
    def arg(self, node: fx.Node, i: int = 0) -> Tensor:
        v = self.values[node.args[i]] if isinstance(node.args[i], fx.Node) else None
        if not isinstance(v, Tensor):
            raise ExportError(f"{node.name}: the C export expected a tensor input here", "export to ONNX instead")
        return v

    def float_out(self, node: fx.Node) -> Tensor:
        shape = self.shape(node)
        return self.em.tensor("float", _numel(shape), shape)

    def unsupported(self, node: fx.Node, what: str) -> ExportError:
        return ExportError(f"{node.name}: the C export has no kernel for {what}",
                           "export to ONNX or OpenVINO instead (bnnc export --format onnx)")

    def emit(self, node: fx.Node) -> Any:
        layered = any(isinstance(v := self.values.get(a), Tensor) and v.batch_axis for a in node.all_input_nodes)
        if layered and not (node.target is operator.getitem or node.target in ("squeeze", "view", "reshape")):
            raise self.unsupported(node, "a recurrent layer's final state other than one layer of it (h_n[-1])")
        if node.op == "call_module":
            module = self.gm.get_submodule(str(node.target))
            return self.module(node, module)
        if node.op == "call_function":
            return self.function(node, node.target)
        if node.op == "call_method":
            return self.method(node, str(node.target))
        raise self.unsupported(node, node.op)

    # -- modules ---------------------------------------------------------------------------------
    def module(self, node: fx.Node, m: nn.Module) -> Any:
        if isinstance(m, BinaryNode):
            return self.binary(node, m.spec)
        if isinstance(m, (BinaryLayer, Int8Layer)):
            raise self.unsupported(node, f"a {type(m).__name__} the lowering didn't replace")
        if isinstance(m, _IDENTITY_MODULES):
            return self.view(node, self.arg(node))
        if type(m) in (nn.Linear, nn.Conv1d, nn.Conv2d):
            return self.fp32_layer(node, m)
        if type(m) in (nn.LSTM, nn.GRU):
            return self.recurrent(node, m)
        if isinstance(m, ShiftBatchNorm):
            return self.shift_batchnorm(node, m)
        if type(m) in (nn.BatchNorm1d, nn.BatchNorm2d):
            return self.batchnorm(node, m)
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
            if m.return_indices:
                raise self.unsupported(node, "max pooling that returns indices")
            return self.pool(node, m, "max")
        if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
            if getattr(m, "divisor_override", None):
                raise self.unsupported(node, "average pooling with divisor_override")
            return self.pool(node, m, "avg")
        if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
            return self.adaptive(node, "avg")
        if isinstance(m, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)):
            if m.return_indices:
                raise self.unsupported(node, "max pooling that returns indices")
            return self.adaptive(node, "max")
        if type(m) is nn.LayerNorm:
            return self.layernorm(node, m)
        if type(m) is nn.GroupNorm:
            return self.groupnorm(node, m.num_groups, m.weight if m.affine else None, m.bias if m.affine else None,
                                  m.eps)
        if type(m) in (nn.InstanceNorm1d, nn.InstanceNorm2d):
            if m.track_running_stats:  # eval: the running statistics, as a BatchNorm
                return self.batchnorm(node, m)
            return self.groupnorm(node, m.num_features, m.weight if m.affine else None,
                                  m.bias if m.affine else None, m.eps)
        if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
            return self.softmax(node, m.dim, isinstance(m, nn.LogSoftmax))
        if type(m) in _PAD_MODES:
            return self.pad(node, m.padding, _PAD_MODES[type(m)], float(getattr(m, "value", 0.0)))
        if isinstance(m, Normalize):
            return self.normalize(node, m)
        if isinstance(m, nn.PReLU):
            return self.prelu(node, m)
        if isinstance(m, nn.Upsample):
            return self.resize(node, self.arg(node), m, m.mode)
        unary = _unary_module(m)
        if unary is not None:
            return self.unary(node, self.arg(node), *unary)
        raise self.unsupported(node, type(m).__name__)

    # -- functions and methods -------------------------------------------------------------------
    def function(self, node: fx.Node, target: Any) -> Any:
        if target in _VIEW_FUNCTIONS:
            return self.view(node, self.arg(node))
        if target in _BINARY_OPS:
            return self.binary_op(node, _BINARY_OPS[target])
        if target in _UNARY_FUNCTIONS:
            kind = _UNARY_FUNCTIONS[target]
            params = _function_params(kind, node)
            return self.unary(node, self.arg(node), kind, params)
        if target in (torch.cat, torch.concat):
            return self.cat(node)
        if target in (torch.clamp, torch.clip):
            return self.unary(node, self.arg(node), "clamp", self.clamp_bounds(node))
        if target in (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d):
            return self.adaptive(node, "avg")
        if target in (F.adaptive_max_pool1d, F.adaptive_max_pool2d) and not _returns_indices(node):
            return self.adaptive(node, "max")
        if target in (torch.transpose, torch.permute):
            return self.permute(node, list(node.args[1:]), target is torch.transpose)
        if target in _REDUCTIONS:
            return self.reduce(node, _REDUCTIONS[target])
        if target in (torch.chunk, torch.split):
            return self.split(node)
        if target is F.layer_norm:
            return self.layer_norm_function(node)
        if target is F.interpolate and not any(isinstance(a, fx.Node) for a in (*node.args[1:], *node.kwargs.values())):
            return self.resize(node, self.arg(node), lambda t: F.interpolate(t, *node.args[1:], **node.kwargs),
                               str(node.kwargs.get("mode", node.args[3] if len(node.args) > 3 else "nearest")))
        tensors = [a for a in node.args if isinstance(a, fx.Node) and isinstance(self.values.get(a), Tensor)]
        if target is getattr and node.args[1] in ("values", "indices") and isinstance(self.values.get(node.args[0]),
                                                                             tuple):
            if node.args[1] == "indices":
                raise self.unsupported(node, "the indices of a max or min")
            return self.values[node.args[0]][0]  # torch.max(x, dim).values
        if target is getattr or not tensors and target is not operator.getitem:
            return None  # x.shape, x.size(1) // 2 and the like: only feed a view's arguments; shapes are static here
        if target is operator.getitem:
            value = self.values.get(node.args[0])
            if isinstance(value, tuple):
                if value[int(node.args[1])] is None:  # type: ignore[arg-type]
                    raise self.unsupported(node, "the indices of a max or min")
                return value[int(node.args[1])]  # type: ignore[arg-type]
            if not isinstance(value, Tensor):
                return None
            if _only_reshapes(node.args[1]):  # x[:, :, None, None]: an unsqueeze, as a view
                return self.view(node, value)
            return self.select(node, value, node.args[1])
        raise self.unsupported(node, getattr(target, "__name__", str(target)))

    def method(self, node: fx.Node, name: str) -> Any:
        if name == "size" or name == "dim":
            return None  # only feeds a view's arguments; shapes are static here
        if name in _VIEWS_METHODS:
            return self.view(node, self.arg(node))
        if name in ("add", "sub", "mul", "div", "add_", "mul_"):
            return self.binary_op(node, {"add": 0, "sub": 1, "mul": 2, "div": 3}[name.rstrip("_")])
        if name in ("relu", "sigmoid", "tanh"):
            return self.unary(node, self.arg(node), name, {})
        if name in ("clamp", "clip", "clamp_", "clip_"):
            return self.unary(node, self.arg(node), "clamp", self.clamp_bounds(node))
        if name in ("transpose", "permute"):
            return self.permute(node, list(node.args[1:]), name == "transpose")
        if name in ("mean", "sum", "max", "min", "amax", "amin"):
            return self.reduce(node, name)
        if name in ("chunk", "split"):
            return self.split(node)
        raise self.unsupported(node, f".{name}()")

    def select(self, node: fx.Node, x: Tensor, index: Any) -> Tensor:
        """Basic indexing of a sample's axes — ``x[:, -1]`` (a sequence's last step), ``x[:, :, 2:-2]`` — as a copy
        through a table of offsets, which numpy's indexing of the offsets themselves computes."""
        items = index if isinstance(index, tuple) else (index,)
        simple = all(i is None or i is Ellipsis or isinstance(i, int) or (
            isinstance(i, slice) and all(isinstance(v, int) or v is None for v in (i.start, i.stop, i.step))
            and (i.step or 1) > 0) for i in items)
        out_shape = self.shape(node)
        batched = [*x.shape[:x.batch_axis], 1, *x.shape[x.batch_axis:]]
        picked = np.arange(x.size, dtype=np.int64).reshape(batched)[items] if simple else None
        if x.layout is not None or x.ctype != "float" or picked is None or picked.shape != (1, *out_shape):
            raise self.unsupported(node, "indexing other than whole batches of a sample's axes by ints and slices")
        return self.gather(node, x, picked.reshape(-1), "indexing")

    def resize(self, node: fx.Node, x: Tensor, resize: Callable[[torch.Tensor], torch.Tensor], mode: str) -> Tensor:
        """Nearest-neighbour resizing (``nn.Upsample``, ``F.interpolate``): each output value is one input value, so
        a copy through a table of offsets, which torch's own resizing of the offsets computes."""
        if mode not in ("nearest", "nearest-exact"):
            raise self.unsupported(node, f"resizing by {mode!r} interpolation (nearest only)")
        batched = [*x.shape[:x.batch_axis], 1, *x.shape[x.batch_axis:]]
        offsets = torch.arange(x.size, dtype=torch.float64).reshape(batched)
        picked = resize(offsets)
        if x.layout is not None or x.ctype != "float" or tuple(picked.shape) != (1, *self.shape(node)):
            raise self.unsupported(node, "resizing other than a sample's spatial axes")
        return self.gather(node, x, picked.round().long().reshape(-1).numpy(), "resizing")

    def gather(self, node: fx.Node, x: Tensor, offsets: np.ndarray, what: str) -> Tensor:
        """``y[i] = x[offsets[i]]``: a copy through a table (int32, in flash) of where each value comes from."""
        if offsets.size > 65536:
            raise self.unsupported(node, f"{what} that selects {offsets.size} values (a table of their offsets)")
        out = self.float_out(node)
        table = self.em.const("int32_t", offsets, f"{node.name}_at")
        self.em.step(f"    {{ const float *x = {x.ref()}; float *y = {out.ref()}; long i;\n"
                     f"      for (i = 0; i < {offsets.size}; ++i) y[i] = x[{table}[i]]; }}", x, out)
        return out

    def recurrent(self, node: fx.Node, m: nn.LSTM | nn.GRU) -> tuple[Any, ...]:
        """An LSTM or GRU in FP32 as torch computes it (batch first, from a zero state, any layers, either
        direction): ``(output, (h_n, c_n))`` or ``(output, h_n)``, the states stacked by layer as in torch."""
        x = self.arg(node)
        kind = type(m).__name__
        if not m.batch_first:
            raise self.unsupported(node, f"an {kind} without batch_first=True (its input isn't batch first)")
        if getattr(m, "proj_size", 0) or len(node.args) > 1 or node.kwargs:
            raise self.unsupported(node, f"an {kind} with proj_size or an initial state")
        if x.ctype != "float" or x.layout is not None or len(x.shape) != 2:
            raise self.unsupported(node, f"an {kind} on other than (steps, features) floats")
        lstm = isinstance(m, nn.LSTM)
        steps, hidden = x.shape[0], m.hidden_size
        layers, dirs = m.num_layers, 2 if m.bidirectional else 1
        self.em.math = True
        out = self.em.tensor("float", steps * dirs * hidden, (steps, dirs * hidden))
        states = [self.em.tensor("float", layers * dirs * hidden, (layers * dirs, hidden)) for _ in range(1 + lstm)]
        for state in states:
            state.batch_axis = 1
        gates = self.em.tensor("float", (4 if lstm else 6) * hidden, (6 * hidden,))
        source = x
        for layer in range(layers):
            target = out if layer == layers - 1 else self.em.tensor("float", out.size, out.shape)
            for d in range(dirs):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                params = []
                for which in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    value = getattr(m, which + suffix, None)
                    rows = (4 if lstm else 3) * hidden
                    array = value.detach().float().numpy() if value is not None else np.zeros(rows, np.float32)
                    params.append(self.em.const("float", array, f"{node.target}_{which}{suffix}"))
                at = (layer * dirs + d) * hidden
                c = f"{states[1].ref()} + {at}" if lstm else "0"
                self.em.step(f"    bnnc_recurrent({0 if lstm else 1}, {source.ref()}, {steps}, {source.shape[1]}, "
                             f"{hidden}, {', '.join(params)}, {d}, {gates.ref()}, {states[0].ref()} + {at}, {c}, "
                             f"{target.ref()} + {d * hidden}, {dirs * hidden});", source, target, gates, *states)
            source = target
        return (out, (states[0], states[1])) if lstm else (out, states[0])

    def clamp_bounds(self, node: fx.Node) -> dict[str, float]:
        """``torch.clamp(x, min, max)``'s constant bounds (either may be None: no bound)."""
        bounds = dict(zip(("min", "max"), node.args[1:], strict=False)) | {
            k: v for k, v in node.kwargs.items() if k in ("min", "max")}
        if any(isinstance(v, fx.Node) for v in bounds.values()):
            raise self.unsupported(node, "clamping to a tensor's bounds")
        return {k: float(v) for k, v in bounds.items() if v is not None}

    # -- steps -----------------------------------------------------------------------------------
    def view(self, node: fx.Node, x: Tensor) -> Tensor:
        shape = self.shape(node)
        if x.layout is not None:
            raise self.unsupported(node, "a view of packed bits")
        return self.em.tensor(x.ctype, x.size, shape, alias=x)

    def unary(self, node: fx.Node, x: Tensor, kind: str, params: dict[str, float]) -> Tensor:
        out = self.float_out(node)
        expr = _unary_expression(kind, params)
        if kind in ("tanh", "sigmoid", "silu", "gelu", "elu", "gelu_tanh", "selu", "celu", "softplus", "mish"):
            self.em.math = True
        self.em.inplace.append((len(self.em.steps), x, out))
        self.em.step(f"    {{ const float *x = {x.ref()}; float *y = {out.ref()}; long i;\n"
                     f"      for (i = 0; i < {out.size}; ++i) {{ const float v = x[i]; y[i] = {expr}; }} }}", x, out)
        return out

    def prelu(self, node: fx.Node, m: nn.PReLU) -> Tensor:
        x = self.arg(node)
        out = self.float_out(node)
        w = m.weight.detach().float().numpy()
        channels = x.shape[0] if len(x.shape) > 1 and w.size > 1 else 1
        inner = x.size // channels if w.size > 1 else x.size
        a = self.em.const("float", w, f"{node.target}_w")
        self.em.step(f"    {{ const float *x = {x.ref()}; float *y = {out.ref()}; long c, i;\n"
                     f"      for (c = 0; c < {channels}; ++c) for (i = 0; i < {inner}; ++i) {{\n"
                     f"        const float v = x[c * {inner} + i]; y[c * {inner} + i] = v >= 0.0f ? v : "
                     f"{a}[{'c' if w.size > 1 else '0'}] * v; }} }}", x, out)
        return out

    def channel_affine(self, node: fx.Node, x: Tensor, ops: list[tuple[str, np.ndarray]]) -> Tensor:
        """Per-channel steps along dim 1 (of the batched tensor): ``v = v op c[ch]`` in order."""
        out = self.float_out(node)
        channels = x.shape[0] if x.shape else 1
        inner = max(x.size // max(channels, 1), 1)
        parts = []
        for op, values in ops:
            c = self.em.const("float", values, f"{node.target}_{len(parts)}")
            parts.append(f"v = v {op} {c}[c];")
        self.em.inplace.append((len(self.em.steps), x, out))
        self.em.step(f"    {{ const float *x = {x.ref()}; float *y = {out.ref()}; long c, i;\n"
                     f"      for (c = 0; c < {channels}; ++c) for (i = 0; i < {inner}; ++i) {{\n"
                     f"        float v = x[c * {inner} + i]; {' '.join(parts)} y[c * {inner} + i] = v; }} }}", x, out)
        return out

    def batchnorm(self, node: fx.Node, m: nn.Module) -> Tensor:
        x = self.arg(node)
        if m.running_mean is None:
            raise self.unsupported(node, "BatchNorm without running statistics")
        c = m.num_features
        weight = m.weight.detach().numpy() if m.weight is not None else np.ones(c, np.float32)
        bias = m.bias.detach().numpy() if m.bias is not None else np.zeros(c, np.float32)
        a, b = affine_as_torch(m.running_mean.numpy(), m.running_var.numpy(), weight, bias, m.eps)
        return self.channel_affine(node, x, [("*", a), ("+", b)])

    def shift_batchnorm(self, node: fx.Node, m: ShiftBatchNorm) -> Tensor:
        x = self.arg(node)
        with torch.no_grad():
            k = ap2(torch.rsqrt(m.running_var + m.eps)).numpy()
            ops = [("-", m.running_mean.numpy()), ("*", k)]
            if m.affine:
                ops += [("*", ap2(m.weight.detach()).numpy()), ("+", m.bias.detach().numpy())]
        return self.channel_affine(node, x, ops)

    def normalize(self, node: fx.Node, m: Normalize) -> Tensor:
        x = self.arg(node)
        c = x.shape[0]
        mean = np.broadcast_to(m.mean.flatten().numpy(), (c,))
        std = np.broadcast_to(m.std.flatten().numpy(), (c,))
        return self.channel_affine(node, x, [("*", np.full(c, m.pixel_scale, np.float32)), ("-", mean), ("/", std)])

    def binary_op(self, node: fx.Node, op: int) -> Tensor:
        """``a op b`` for tensors (broadcast), a tensor and a number, or a tensor and a constant (a parameter)."""
        out = self.float_out(node)
        shape = (1, *out.shape)
        exprs: list[str] = []
        shapes: list[tuple[int, ...]] = []
        used: list[Tensor] = []
        number: str | None = None
        for a in node.args[:2]:
            value = self.values.get(a) if isinstance(a, fx.Node) else a
            if isinstance(value, Tensor):
                if value.layout is not None:
                    raise self.unsupported(node, "arithmetic on packed bits")
                exprs.append(value.ref())
                shapes.append((1, *value.shape))
                used.append(value)
            elif isinstance(value, torch.Tensor) and value.dtype.is_floating_point and value.numel() > 1:
                exprs.append(self.em.const("float", value.detach().float().numpy(), f"{node.name}_c"))
                shapes.append(tuple(value.shape))
            elif isinstance(value, (int, float)) or isinstance(value, torch.Tensor) and value.numel() == 1:
                number = _float_literal(float(value))
                exprs.append("@NUMBER@")
                shapes.append(())
            else:
                raise self.unsupported(node, f"an operand of type {type(value).__name__}")
        if node.kwargs.get("alpha", 1) != 1:
            raise self.unsupported(node, "add/sub with alpha")
        if not used:
            raise self.unsupported(node, "arithmetic on constants alone")
        symbol = "+-*/"[op]
        if number is not None:
            t = used[0]
            expr = f"x[i] {symbol} {number}" if exprs[0] != "@NUMBER@" else f"{number} {symbol} x[i]"
            self.em.step(f"    {{ const float *x = {t.ref()}; float *y = {out.ref()}; long i;\n"
                         f"      for (i = 0; i < {out.size}; ++i) y[i] = {expr}; }}", t, out)
            return out
        if all(_numel(sh) == out.size for sh in shapes):
            self.em.step(f"    {{ const float *a = {exprs[0]}, *b = {exprs[1]}; float *y = {out.ref()}; long i;\n"
                         f"      for (i = 0; i < {out.size}; ++i) y[i] = a[i] {symbol} b[i]; }}", *used, out)
            return out
        rank = len(shape)
        if rank > 8 or any(len(sh) > rank for sh in shapes):
            raise self.unsupported(node, "broadcasting over more than 8 dimensions")

        def strides(s: tuple[int, ...]) -> list[int]:
            s = (1,) * (rank - len(s)) + s
            st, acc = [0] * rank, 1
            for d in range(rank - 1, -1, -1):
                st[d] = 0 if s[d] == 1 and shape[d] != 1 else acc
                acc *= s[d]
            return st
        dims = self.em.const("int", list(shape), f"{node.name}_shape")
        sa = self.em.const("int", strides(shapes[0]), f"{node.name}_sa")
        sb = self.em.const("int", strides(shapes[1]), f"{node.name}_sb")
        self.em.step(f"    bnnc_broadcast({exprs[0]}, {exprs[1]}, {out.ref()}, {op}, {rank}, {dims}, {sa}, {sb});",
                     *used, out)
        return out

    def split(self, node: fx.Node) -> tuple[Tensor, ...]:
        """``chunk``/``split`` along a dimension: views of the input where each piece is contiguous (along the
        channels of one sample), copies otherwise."""
        x = self.arg(node)
        if x.layout is not None:
            raise self.unsupported(node, "splitting packed bits")
        metas = node.meta.get("tensor_meta")
        if not isinstance(metas, (tuple, list)):
            raise self.unsupported(node, "a split whose pieces are unknown")
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        rank = len(x.shape) + 1
        dim = int(dim) % rank  # type: ignore[call-overload]
        if dim == 0:
            raise self.unsupported(node, "splitting the batch")
        full = (1, *x.shape)
        outer, inner = _numel(full[:dim]), _numel(full[dim + 1:])
        pieces, at = [], 0
        for meta in metas:
            shape = tuple(int(v) for v in meta.shape[1:])
            size = shape[dim - 1] * inner
            if outer == 1:
                piece = self.em.tensor("float", _numel(shape), shape, alias=x)
                piece.view_offset = at
            else:
                piece = self.em.tensor("float", _numel(shape), shape)
                self.em.step(f"    {{ long o;\n      for (o = 0; o < {outer}; ++o) memcpy({piece.ref()} + o * {size}, "
                             f"{x.ref()} + o * {full[dim] * inner} + {at}, sizeof(float) * {size}); }}", piece, x)
            pieces.append(piece)
            at += size
        return tuple(pieces)

    def cat(self, node: fx.Node) -> Tensor:
        parts = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        out = self.float_out(node)
        rank = len(out.shape) + 1
        dim = int(dim) % rank
        if dim == 0:
            raise self.unsupported(node, "concatenation along the batch")
        outer = _numel((1, *out.shape)[:dim])
        code, at, ins = [], 0, []
        for p in parts:
            t = self.values[p]
            if not isinstance(t, Tensor) or t.layout is not None:
                raise self.unsupported(node, "concatenating something other than float tensors")
            chunk = t.size // outer
            code.append(f"      for (o = 0; o < {outer}; ++o) memcpy({out.ref()} + o * {out.size // outer} + {at}, "
                        f"{t.ref()} + o * {chunk}, sizeof(float) * {chunk});")
            at += chunk
            ins.append(t)
        self.em.step("    { long o;\n" + "\n".join(code) + " }", out, *ins)
        return out

    def permute(self, node: fx.Node, dims: list[Any], transpose: bool) -> Tensor:
        x = self.arg(node)
        rank = len(x.shape) + 1
        if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
            dims = list(dims[0])
        if transpose:
            a, b = (int(d) % rank for d in dims)
            order = list(range(rank))
            order[a], order[b] = order[b], order[a]
        else:
            order = [int(d) % rank for d in dims]
        if order[0] != 0:
            raise self.unsupported(node, "a permutation that moves the batch")
        in_shape = (1, *x.shape)
        in_strides = [_numel(in_shape[d + 1:]) for d in range(rank)]
        out = self.float_out(node)
        shape = self.em.const("int", [in_shape[d] for d in order], f"{node.name}_shape")
        strides = self.em.const("int", [in_strides[d] for d in order], f"{node.name}_strides")
        self.em.step(f"    bnnc_permute({x.ref()}, {out.ref()}, {rank}, {shape}, {strides});", x, out)
        return out

    def reduce(self, node: fx.Node, kind: str) -> Tensor | tuple[Tensor, None]:
        """``mean``, ``sum``, ``amax``/``amin`` over adjacent dimensions of a sample; ``max``/``min`` over one
        dimension, whose ``(values, indices)`` give the values only (a NaN wins, as in torch)."""
        x = self.arg(node)
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if isinstance(dims, fx.Node):
            raise self.unsupported(node, f"an elementwise {kind} of two tensors")
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        rank = len(x.shape) + 1
        dims = sorted(int(d) % rank for d in dims)
        if not dims or dims != list(range(dims[0], dims[-1] + 1)) or dims[0] < 1:
            raise self.unsupported(node, f"a {kind} over the batch or over dimensions that aren't adjacent")
        metas = node.meta.get("tensor_meta")
        pair = kind in ("max", "min")
        if pair:  # torch.max(x, dim): (values, indices)
            if not isinstance(metas, (tuple, list)):
                raise self.unsupported(node, f"a {kind} whose result is unknown")
            shape = tuple(int(v) for v in metas[0].shape[1:])
            out = self.em.tensor("float", _numel(shape), shape)
        else:
            out = self.float_out(node)
        full = (1, *x.shape)
        outer, count, inner = _numel(full[:dims[0]]), _numel(full[dims[0]:dims[-1] + 1]), _numel(full[dims[-1] + 1:])
        at = f"x[(o * {count} + r) * {inner} + i]"
        if kind in ("mean", "sum"):
            start, step = "0.0f", "s += v;"
            end = f"s / {float(count)}f" if kind == "mean" else "s"
        else:
            start, end = f"x[o * {count} * {inner} + i]", "s"
            step = f"if (v {'>' if kind in ('max', 'amax') else '<'} s || v != v) s = v;"
        self.em.step(f"    {{ const float *x = {x.ref()}; float *y = {out.ref()}; long o, r, i;\n"
                     f"      for (o = 0; o < {outer}; ++o) for (i = 0; i < {inner}; ++i) {{ float s = {start};\n"
                     f"        for (r = 0; r < {count}; ++r) {{ const float v = {at}; {step} }}\n"
                     f"        y[o * {inner} + i] = {end}; }} }}", x, out)
        return (out, None) if pair else out

    def adaptive(self, node: fx.Node, kind: str) -> Tensor:
        """Adaptive average or max pooling: torch's windows, ``[floor(i*in/out), ceil((i+1)*in/out))``."""
        x = self.arg(node)
        out = self.float_out(node)
        (ih, iw), (oh, ow) = _hw(x.shape), _hw(out.shape)
        self.em.step(f"    bnnc_adaptive_pool({x.ref()}, {x.shape[0]}, {ih}, {iw}, {oh}, {ow}, {int(kind == 'max')}, "
                     f"{out.ref()});", x, out)
        return out

    def pad(self, node: fx.Node, padding: tuple[int, ...], mode: int, value: float) -> Tensor:
        """Reflect (0), replicate (1), circular (2) or constant (3) padding of the last one or two axes, ``padding``
        in F.pad's order."""
        x = self.arg(node)
        if x.ctype != "float":
            raise self.unsupported(node, f"padding a {x.ctype} tensor")
        if min(padding) < 0:
            raise self.unsupported(node, "cropping (negative padding)")
        if len(x.shape) not in (2, 3) or len(padding) // 2 >= len(x.shape):
            raise self.unsupported(node, f"padding {len(padding) // 2} axes of a {len(x.shape) + 1}-d tensor")
        out = self.float_out(node)
        left, top = padding[0], (padding[2] if len(padding) == 4 else 0)
        (ih, iw), (oh, ow) = _hw(x.shape), _hw(out.shape)
        channels = x.size // (ih * iw)
        self.em.step(f"    bnnc_pad({x.ref()}, {channels}, {ih}, {iw}, {top}, {left}, {oh}, {ow}, {mode}, "
                     f"{_float_literal(value)}, {out.ref()});", x, out)
        return out

    def groupnorm(self, node: fx.Node, groups: int, weight_t: torch.Tensor | None, bias_t: torch.Tensor | None,
                  eps: float) -> Tensor:
        """GroupNorm (InstanceNorm: a group a channel): each group's channels, contiguous in a sample, normalised
        by their own mean and variance, then each channel's affine."""
        x = self.arg(node)
        channels = x.shape[0]
        w = weight_t.detach().numpy() if weight_t is not None else np.ones(channels)
        b = bias_t.detach().numpy() if bias_t is not None else np.zeros(channels)
        return self.normalised_rows(node, x, groups, w, b, f"(r * {x.size // groups} + i) / {x.size // channels}",
                                    eps)

    def layernorm(self, node: fx.Node, m: nn.LayerNorm) -> Tensor:
        return self.layernorm_of(node, tuple(m.normalized_shape), m.weight, m.bias, m.eps)

    def layer_norm_function(self, node: fx.Node) -> Tensor:
        args = [*node.args, *[None] * 5][:5]
        shape, weight, bias = args[1], args[2], args[3]
        eps = args[4] if args[4] is not None else node.kwargs.get("eps", 1e-5)
        weight, bias = (self.values.get(a) if isinstance(a, fx.Node) else a for a in (weight, bias))
        if not all(v is None or isinstance(v, torch.Tensor) for v in (weight, bias)):
            raise self.unsupported(node, "layer_norm with computed parameters")
        return self.layernorm_of(node, tuple(shape), weight, bias, float(eps))  # type: ignore[arg-type]

    def layernorm_of(self, node: fx.Node, normalized_shape: tuple[int, ...], weight_t: torch.Tensor | None,
                     bias_t: torch.Tensor | None, eps: float) -> Tensor:
        x = self.arg(node)
        n = _numel(normalized_shape)
        w = weight_t.detach().numpy() if weight_t is not None else np.ones(n)
        b = bias_t.detach().numpy() if bias_t is not None else np.zeros(n)
        return self.normalised_rows(node, x, x.size // n, w, b, "i", eps)

    def normalised_rows(self, node: fx.Node, x: Tensor, rows: int, weight: np.ndarray, bias: np.ndarray,
                        index: str, eps: float) -> Tensor:
        """``x`` as ``rows`` equal rows, each normalised by its own mean and variance (summed in double), then
        ``y = v * weight[index] + bias[index]``; ``index`` a C expression of the row ``r`` and position ``i``."""
        out = self.float_out(node)
        n = x.size // rows
        w = self.em.const("float", weight, f"{node.name}_w")
        b = self.em.const("float", bias, f"{node.name}_b")
        self.em.math = True
        self.em.step(f"    {{ const float *x = {x.ref()}; float *y = {out.ref()}; long r, i;\n"
                     f"      for (r = 0; r < {rows}; ++r) {{ const float *v = x + r * {n}; double m = 0.0, q = 0.0; "
                     f"float mean, rstd;\n"
                     f"        for (i = 0; i < {n}; ++i) m += v[i];\n        mean = (float)(m / {n});\n"
                     f"        for (i = 0; i < {n}; ++i) q += ((double)v[i] - mean) * ((double)v[i] - mean);\n"
                     f"        rstd = (float)(1.0 / sqrt(q / {n} + {float(eps)!r}));\n"
                     f"        for (i = 0; i < {n}; ++i)\n"
                     f"          y[r * {n} + i] = (v[i] - mean) * rstd * {w}[{index}] + {b}[{index}]; }} }}",
                     x, out)
        return out

    def softmax(self, node: fx.Node, dim: int | None, log: bool) -> Tensor:
        x = self.arg(node)
        rank = len(x.shape) + 1
        if dim is None or int(dim) % rank != rank - 1:
            raise self.unsupported(node, "softmax over other than the last dimension")
        out = self.float_out(node)
        n = (1, *x.shape)[-1]
        self.em.math = True
        last = "y[r * N + i] = (float)(v[i] - mx - log(s));" if log else "y[r * N + i] = (float)(exp(v[i] - mx) / s);"
        self.em.step(f"    {{ const float *x = {x.ref()}; float *y = {out.ref()}; long r, i; const long N = {n};\n"
                     f"      for (r = 0; r < {x.size // n}; ++r) {{ const float *v = x + r * N; float mx = v[0]; "
                     f"double s = 0.0;\n        for (i = 1; i < N; ++i) if (v[i] > mx) mx = v[i];\n"
                     f"        for (i = 0; i < N; ++i) s += exp(v[i] - mx);\n"
                     f"        for (i = 0; i < N; ++i) {last} }} }}",
                     x, out)
        return out

    def pool(self, node: fx.Node, m: nn.Module, kind: str) -> Tensor:
        x = self.arg(node)
        out = self.float_out(node)
        geometry = self.pool_geometry(m, x.shape, out.shape)
        if kind == "max":
            self.em.step(f"    {{ static const bnnc_pool P = {geometry};\n"
                         f"      bnnc_max_pool({x.ref()}, 0, {x.shape[0]}, &P, {out.ref()}); }}", x, out)
        else:
            self.em.step(f"    {{ static const bnnc_pool P = {geometry};\n"
                         f"      bnnc_avg_pool({x.ref()}, {x.shape[0]}, &P, {int(bool(m.count_include_pad))}, "
                         f"{out.ref()}); }}", x, out)
        return out

    @staticmethod
    def pool_geometry(m: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> str:
        n = 1 if len(in_shape) == 2 else 2
        k = _pairs(m.kernel_size, n)
        s = _pairs(m.stride if m.stride is not None else m.kernel_size, n)
        p = _pairs(m.padding, n)
        d = _pairs(getattr(m, "dilation", 1), n)
        if n == 1:
            k, s, p, d = (1, *k), (1, *s), (0, *p), (1, *d)
        (ih, iw), (oh, ow) = _hw(in_shape), _hw(out_shape)
        return "{" + ", ".join(str(v) for v in (ih, iw, oh, ow, *k, *s, *p, *d)) + "}"

    # -- layers ----------------------------------------------------------------------------------
    @staticmethod
    def conv_geometry(layer: Any, x_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> dict[str, int]:
        """The bnnc_layer fields of a convolution's geometry (a Conv1d as 1 x k)."""
        (sh, sw), (ph, pw), _, (dh, dw) = conv_geometry(layer)
        kernel = tuple(layer.kernel_size)
        kh, kw = (1, *kernel) if len(kernel) == 1 else kernel
        (ih, iw), (oh, ow) = _hw(x_shape), _hw(out_shape)
        return dict(ih=ih, iw=iw, oh=oh, ow=ow, kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw)

    def layer_struct(self, fields: dict[str, Any]) -> str:
        order = ["in_kind", "out_mode", "linear", "rows", "cin", "cout", "groups", "ih", "iw", "oh", "ow", "kh", "kw",
                 "sh", "sw", "ph", "pw", "dh", "dw", "in_wpg", "k_valid", "wbits", "wq", "wf", "scale",
                 "shift", "ti", "tf", "out", "q_scale", "q_zero"]
        defaults = {"rows": 1, "groups": 1, "ih": 1, "iw": 1, "oh": 1, "ow": 1, "kh": 1, "kw": 1, "sh": 1, "sw": 1,
                    "ph": 0, "pw": 0, "dh": 1, "dw": 1, "in_wpg": 0, "k_valid": 0, "wbits": "0",
                    "wq": "0", "wf": "0", "scale": "0", "shift": "0", "ti": "0", "tf": "0", "out": "{0, 0, 0, 0}",
                    "q_scale": "1.0f", "q_zero": 0, "linear": 0}
        values = [str(fields.get(k, defaults.get(k))) for k in order]
        return "{" + ", ".join(values) + "}"

    def fp32_layer(self, node: fx.Node, m: nn.Module) -> Tensor:
        x = self.arg(node)
        out = self.float_out(node)
        w = m.weight.detach().float()
        groups = getattr(m, "groups", 1)
        per_group = w.reshape(groups, w.shape[0] // groups, -1).transpose(1, 2)  # [g][K][o]: see bnnc_dot_rows
        wf = self.em.const("float", per_group.contiguous().numpy(), f"{node.target}_w")
        bias = self.em.const("float", m.bias.detach().numpy(), f"{node.target}_b") if m.bias is not None else "0"
        fields: dict[str, Any] = {"in_kind": "BNNC_IN_FP32", "out_mode": "BNNC_OUT_AFFINE", "wf": wf, "shift": bias}
        if isinstance(m, nn.Linear):
            fields.update(linear=1, rows=x.size // m.in_features, cin=m.in_features, cout=m.out_features)
            self.em.need_scratch(sf=min(m.out_features, CHUNK))
        else:
            fields.update(cin=m.in_channels, cout=m.out_channels, groups=m.groups,
                          **self.conv_geometry(m, x.shape, out.shape))
            self.em.need_scratch(sf=min(m.out_channels, CHUNK), pf=w[0].numel())
        self.em.step(f"    {{ static const bnnc_layer L = {self.layer_struct(fields)};\n"
                     f"      bnnc_layer_run(&L, {x.ref()}, {out.ref()}, &bnnc_S); }}", x, out)
        return out

    @staticmethod
    def input_layout(spec: NodeSpec, x_shape: tuple[int, ...],
                     producer: NodeSpec | None, producer_shape: tuple[int, ...] | None) -> BitsLayout:
        """How ``spec``'s layer wants its input bits packed."""
        layer: Any = spec.layer
        if spec.is_conv:
            h, w = _hw(x_shape)
            return BitsLayout(h * w, layer.in_channels, layer.groups)
        if producer is not None and producer.is_conv:  # a conv's bits, flattened: packed as the conv lays them
            assert producer_shape is not None
            h, w = _hw(producer_shape)
            return BitsLayout(h * w, producer.layer.weight.shape[0])
        return BitsLayout(1, layer.in_features)

    def binary(self, node: fx.Node, spec: NodeSpec) -> Any:
        layer: Any = spec.layer
        x_node = node.args[0]
        x = self.arg(node)
        out_shape = self.shape(node)
        weights = spec.weight_signs()
        cout = int(weights.shape[0])
        fields: dict[str, Any] = {"cout": cout}
        producer = self.producers.get(x_node) if isinstance(x_node, fx.Node) else None
        rows_input: Tensor | None = None  # a binary Linear on a float input of several rows
        # the input
        if spec.input in ("bits", "float"):
            if spec.is_conv:
                layout = self.input_layout(spec, self.shape(x_node), None, None)
            else:
                prod_spec, prod_shape = producer if producer else (None, None)
                layout = self.input_layout(spec, self.shape(x_node), prod_spec, prod_shape)
            if spec.input == "float":
                bits = self.em.tensor("uint64_t", layout.words, layout=layout)
                beta = layer.input_binarizer.beta
                b = self.em.const("float", beta.detach().numpy(), f"{spec.name}_beta") if beta is not None else "0"
                channels, positions = (layer.in_channels, layout.positions) if spec.is_conv else (layer.in_features, 1)
                binarize = f"bnnc_binarize(@X@, {channels}, {positions}, {b}, 0, &l, {bits.ref()});"
                if not spec.is_conv and x.size != layer.in_features:  # rows: binarized and computed one by one
                    rows_input = x
                else:
                    self.em.step(f"    {{ static const bnnc_bits_layout l = {layout.c()};\n"
                                 f"      {binarize.replace('@X@', x.ref())} }}", x, bits)
                x = bits
            elif x.layout != layout:
                raise ExportError(f"{spec.name}: its input bits are packed for another layout (a bnnc bug)",
                                  "re-run with --debug and report it; --format onnx exports the model")
            fields.update(in_kind="BNNC_IN_BITS", in_wpg=layout.wpg if spec.is_conv else layout.words)
            wbits = self.xnor_weights(spec, weights, layout, producer)
            fields.update(wbits=self.em.const("uint64_t", wbits, f"{spec.name}_w"))
            if not spec.is_conv:
                fields.update(k_valid=layer.in_features)
            taps = int(np.prod(weights.shape[2:])) if spec.is_conv else 1
            self.em.need_scratch(si=min(cout, CHUNK) + BLOCK, pw=taps * layout.wpg)
        elif spec.input == "real":
            k = int(weights[0].numel())
            rows = np.packbits((weights.reshape(cout, -1) >= 0).numpy(), axis=1, bitorder="little")
            words = -(-k // WORD)
            padded = np.zeros((cout, words * 8), np.uint8)
            padded[:, :rows.shape[1]] = rows
            fields.update(in_kind="BNNC_IN_REAL", wbits=self.em.const("uint64_t", padded.view("<u8"), f"{spec.name}_w"))
            self.em.need_scratch(sf=min(cout, CHUNK), **({"pf": k} if spec.is_conv else {}))
        elif spec.input == "quantize":
            k = int(weights[0].numel())
            fields.update(in_kind="BNNC_IN_INT8", wq=self.em.const("int8_t", weights.to(torch.int64).numpy(),
                                                                    f"{spec.name}_w"),
                          q_scale=_float_literal(float(layer.input_scale.detach())),
                          q_zero=int(layer.input_zero_point.detach()))
            self.em.need_scratch(si=min(cout, CHUNK), ph=k)
        else:
            raise self.unsupported(node, f"a binary layer with input {spec.input!r}")
        # the geometry
        if spec.is_conv:
            conv_out = self.conv_out_shape(node, spec)
            fields.update(cin=layer.in_channels, groups=layer.groups,
                          **self.conv_geometry(layer, self.shape(x_node), conv_out))
        else:
            rows = x.size // layer.in_features if x.layout is None else 1
            fields.update(linear=1, rows=rows, cin=layer.in_features)
            conv_out = out_shape
        # the output
        integer = spec.input != "real"
        if spec.fused is None:
            scale, shift = spec.output_affine()
            out = self.float_out(node)
            fields.update(out_mode="BNNC_OUT_AFFINE",
                          scale=self.em.const("float", scale.float().numpy(), f"{spec.name}_scale")
                          if scale is not None else "0",
                          shift=self.em.const("float", shift.float().numpy(), f"{spec.name}_shift")
                          if shift is not None else "0")
            if rows_input is not None:
                rows = rows_input.size // layer.in_features
                self.em.step(f"    {{ static const bnnc_bits_layout l = {x.layout.c()};\n"  # type: ignore[union-attr]
                             f"      static const bnnc_layer L = {self.layer_struct(fields)};\n      long r;\n"
                             f"      for (r = 0; r < {rows}; ++r) {{\n"
                             f"        {binarize.replace('@X@', f'{rows_input.ref()} + r * {layer.in_features}')}\n"
                             f"        bnnc_layer_run(&L, {x.ref()}, {out.ref()} + r * {cout}, &bnnc_S); }} }}",
                             rows_input, x, out)
                return out
            self.layer_step(fields, x, out)
            return out
        if rows_input is not None:
            raise self.unsupported(node, "fused thresholds after a Linear layer on several rows")
        consumer = next(iter(node.users))
        cspec = self.gm.get_submodule(str(consumer.target)).spec if consumer.op == "call_module" and isinstance(
            self.gm.get_submodule(str(consumer.target)), BinaryNode) else None
        if cspec is None or len(node.users) != 1:
            raise ExportError(f"{spec.name}: a fused chain whose bits go elsewhere than one binary layer (a bnnc bug)",
                              "re-run with --debug and report it; --format onnx exports the model")
        pooled_shape = self.pooled_shape(spec, conv_out)
        self.producers[node] = (spec, pooled_shape)
        layout = self.input_layout(cspec, pooled_shape, spec, pooled_shape)
        out = self.em.tensor("uint64_t", layout.words, out_shape, layout=layout)
        t = spec.fused.thresholds.threshold
        f = spec.fused
        if f.per_position:
            positions = _numel(conv_out[1:])
            stage = self.em.tensor("int32_t" if integer else "float", cout * positions, conv_out)
            fields.update(out_mode="BNNC_OUT_SUMS")
            self.layer_step(fields, x, stage)
            if f.pool is not None:
                pooled = self.em.tensor(stage.ctype, cout * _numel(pooled_shape[1:]), pooled_shape)
                geometry = self.pool_geometry(f.pool, conv_out, pooled_shape)
                self.em.step(f"    {{ static const bnnc_pool P = {geometry};\n"
                             f"      bnnc_max_pool({stage.ref()}, {int(integer)}, {cout}, &P, {pooled.ref()}); }}",
                             stage, pooled)
                stage = pooled
            tname = self.em.const("int32_t" if integer else "float", _thresholds(t, integer), f"{spec.name}_t")
            ti, tf = (tname, "0") if integer else ("0", tname)
            si, sf = (stage.ref(), "0") if integer else ("0", stage.ref())
            self.em.step(f"    {{ static const bnnc_bits_layout l = {layout.c()};\n"
                         f"      bnnc_threshold_positions({si}, {sf}, {ti}, {tf}, {cout}, "
                         f"{_numel(pooled_shape[1:])}, &l, {out.ref()}); }}", stage, out)
            return out
        tname = self.em.const("int32_t" if integer else "float", _thresholds(t[:, 0], integer), f"{spec.name}_t")
        fields.update(out_mode="BNNC_OUT_BITS", **({"ti": tname} if integer else {"tf": tname}))
        if f.pool is not None:
            full = BitsLayout(_numel(conv_out[1:]), layout.channels, layout.groups)
            stage = self.em.tensor("uint64_t", full.words, conv_out, layout=full)
            fields.update(out=full.c())
            self.layer_step(fields, x, stage)
            self.em.step(f"    {{ static const bnnc_pool P = {self.pool_geometry(f.pool, conv_out, pooled_shape)};\n"
                         f"      bnnc_pool_bits({stage.ref()}, &P, {layout.wpp}, {out.ref()}); }}", stage, out)
            return out
        fields.update(out=layout.c())
        self.layer_step(fields, x, out)
        return out

    def layer_step(self, fields: dict[str, Any], x: Tensor, out: Tensor) -> None:
        self.em.step(f"    {{ static const bnnc_layer L = {self.layer_struct(fields)};\n"
                     f"      bnnc_layer_run(&L, {x.ref()}, {out.ref()}, &bnnc_S); }}", x, out)

    def conv_out_shape(self, node: fx.Node, spec: NodeSpec) -> tuple[int, ...]:
        """The convolution's own output shape (before the fused chain's pool and flatten)."""
        layer: Any = spec.layer
        x_shape = self.shape(node.args[0])  # type: ignore[arg-type]
        with torch.no_grad():
            probe = torch.zeros((1, *x_shape))
            y = layer._conv_forward(probe, torch.zeros_like(layer.weight), None)
        return tuple(int(s) for s in y.shape[1:])

    @staticmethod
    def pooled_shape(spec: NodeSpec, conv_out: tuple[int, ...]) -> tuple[int, ...]:
        f = spec.fused
        if f is None or f.pool is None:
            return conv_out
        with torch.no_grad():
            y = f.pool(torch.zeros((1, *conv_out)))
        return tuple(int(s) for s in y.shape[1:])

    def xnor_weights(self, spec: NodeSpec, w: torch.Tensor, layout: BitsLayout,
                     producer: tuple[NodeSpec, tuple[int, ...]] | None) -> np.ndarray:
        """The +-1 weights as bits in the input's layout, blocked for the XNOR kernel: [g][o / 8][word][o % 8]."""
        signs = (w >= 0).numpy()
        cout = signs.shape[0]
        if spec.is_conv:
            groups = spec.layer.groups
            og = cout // groups
            cg = signs.shape[1]
            taps = int(np.prod(signs.shape[2:]))
            per_tap = signs.reshape(cout, cg, taps).transpose(0, 2, 1)            # (o, tap, c)
            bits = np.zeros((cout, taps, layout.wpg * WORD), bool)
            bits[:, :, :cg] = per_tap
            rows = bits.reshape(cout, taps * layout.wpg * WORD)
        else:
            groups, og = 1, cout
            k = signs.shape[1]
            rows = np.zeros((cout, layout.words * WORD), bool)
            if producer is not None and producer[0].is_conv:
                positions = layout.positions
                c, p = np.divmod(np.arange(k), positions)                        # flatten order: channel-major
                rows[:, p * layout.wpp * WORD + c] = signs
            else:
                rows[:, :k] = signs
        words = np.packbits(rows, axis=1, bitorder="little").view("<u8")       # (o, words)
        nw = words.shape[1]
        o8 = -(-og // BLOCK) * BLOCK
        blocked = np.zeros((groups, o8, nw), np.uint64)
        blocked[:, :og] = words.reshape(groups, og, nw)
        blocked = blocked.reshape(groups, o8 // BLOCK, BLOCK, nw).transpose(0, 1, 3, 2)
        return np.ascontiguousarray(blocked).reshape(-1)


def _thresholds(t: torch.Tensor, integer: bool) -> np.ndarray:
    if integer:
        return t.clamp(-(2**31), 2**31 - 1).to(torch.int64).numpy().reshape(-1)
    v = t.to(torch.float32).numpy().reshape(-1)
    return np.clip(np.nan_to_num(v, posinf=FLT_MAX, neginf=-FLT_MAX), -FLT_MAX, FLT_MAX)


def _unary_module(m: nn.Module) -> tuple[str, dict[str, float]] | None:
    if type(m) is nn.ReLU:
        return "relu", {}
    if type(m) is nn.ReLU6:
        return "hardtanh", {"min": 0.0, "max": 6.0}
    if type(m) is nn.Hardtanh:
        return "hardtanh", {"min": float(m.min_val), "max": float(m.max_val)}
    if type(m) is nn.LeakyReLU:
        return "leaky_relu", {"slope": float(m.negative_slope)}
    if type(m) is nn.ELU:
        return "elu", {"alpha": float(m.alpha)}
    if type(m) is nn.GELU:
        return ("gelu_tanh" if m.approximate == "tanh" else "gelu"), {}
    if type(m) is nn.CELU:
        return "celu", {"alpha": float(m.alpha)}
    if type(m) is nn.Softplus:
        return "softplus", {"beta": float(m.beta), "threshold": float(m.threshold)}
    simple: dict[type[nn.Module], str] = {nn.SiLU: "silu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid",
                                          nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid", nn.SELU: "selu",
                                          nn.Mish: "mish", nn.Softsign: "softsign"}
    kind = simple.get(type(m))
    return (kind, {}) if kind else None


def _only_reshapes(index: Any) -> bool:
    """An index of whole slices, ``None`` and ``...`` only: it adds axes of 1 and selects everything."""
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or i == slice(None) for i in items)


def _function_params(kind: str, node: fx.Node) -> dict[str, float]:
    def arg(i: int, key: str, default: float) -> float:
        if len(node.args) > i:
            return float(node.args[i])  # type: ignore[arg-type]
        return float(node.kwargs.get(key, default))
    if kind == "hardtanh":
        return {"min": arg(1, "min_val", -1.0), "max": arg(2, "max_val", 1.0)}
    if kind == "relu6":
        return {}
    if kind == "leaky_relu":
        return {"slope": arg(1, "negative_slope", 0.01)}
    if kind in ("elu", "celu"):
        return {"alpha": arg(1, "alpha", 1.0)}
    if kind == "softplus":
        return {"beta": arg(1, "beta", 1.0), "threshold": arg(2, "threshold", 20.0)}
    if kind == "gelu" and node.kwargs.get("approximate", "none") == "tanh":
        return {"tanh": 1.0}
    return {}


def _unary_expression(kind: str, p: dict[str, float]) -> str:
    if kind == "gelu" and p.get("tanh"):
        kind = "gelu_tanh"
    lit = _float_literal
    expressions: dict[str, Callable[[], str]] = {
        "relu": lambda: "v > 0.0f ? v : 0.0f",
        "relu6": lambda: "v < 0.0f ? 0.0f : v > 6.0f ? 6.0f : v",
        "hardtanh": lambda: f"v < {lit(p['min'])} ? {lit(p['min'])} : v > {lit(p['max'])} ? {lit(p['max'])} : v",
        "leaky_relu": lambda: f"v > 0.0f ? v : v * {lit(p['slope'])}",
        "elu": lambda: f"v > 0.0f ? v : {lit(p['alpha'])} * (float)expm1((double)v)",
        "tanh": lambda: "(float)tanh((double)v)",
        "sigmoid": lambda: "(float)(1.0 / (1.0 + exp(-(double)v)))",
        "silu": lambda: "(float)((double)v / (1.0 + exp(-(double)v)))",
        "gelu": lambda: "(float)(0.5 * (double)v * (1.0 + erf((double)v * 0.70710678118654752440)))",
        "gelu_tanh": lambda: "(float)(0.5 * (double)v * (1.0 + tanh(0.79788456080286535588 * ((double)v + "
                             "0.044715 * (double)v * (double)v * (double)v))))",
        "hardswish": lambda: "v <= -3.0f ? 0.0f : v >= 3.0f ? v : v * (v + 3.0f) / 6.0f",
        "hardsigmoid": lambda: "v <= -3.0f ? 0.0f : v >= 3.0f ? 1.0f : v / 6.0f + 0.5f",
        "selu": lambda: "(float)(1.0507009873554804934 * (v > 0.0f ? (double)v : "
                        "1.6732632423543772848 * expm1((double)v)))",
        "celu": lambda: f"v > 0.0f ? v : (float)({lit(p['alpha'])} * expm1((double)v / {lit(p['alpha'])}))",
        "softplus": lambda: f"v * {lit(p['beta'])} > {lit(p['threshold'])} ? v : "
                            f"(float)(log1p(exp((double)v * {lit(p['beta'])})) / {lit(p['beta'])})",
        "mish": lambda: "(float)((double)v * tanh(v > 20.0f ? (double)v : log1p(exp((double)v))))",
        "softsign": lambda: "v / (1.0f + (v < 0.0f ? -v : v))",
        "clamp": lambda: "".join(f"v {op} {lit(p[k])} ? {lit(p[k])} : " for k, op in (("min", "<"), ("max", ">"))
                                 if k in p) + "v",
    }
    if kind not in expressions:
        raise ExportError(f"the C export has no kernel for {kind}", "export to ONNX or OpenVINO instead")
    return expressions[kind]()
