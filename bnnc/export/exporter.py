"""``export_onnx``: a binarized model -> a mixed-precision ONNX file, checked against PyTorch.

The model is lowered (:mod:`bnnc.export.lowering`), exported with torch's TorchScript-based
exporter — the FP32 parts as usual, each binary layer as one placeholder node — and the
placeholders are replaced by integer subgraphs with 1-bit weights (:mod:`bnnc.export.graph`).
The result is checked with ``onnx.checker`` and, by default, against the PyTorch model in ONNX
Runtime before it is written.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from torch import nn

from bnnc import defaults
from bnnc.data import DataSpec, DataSplits, Preprocessing, load_data
from bnnc.errors import ExportError, first_line
from bnnc.export.batchnorm import match_torch_batchnorm
from bnnc.export.graph import build
from bnnc.export.lowering import Lowered, lower
from bnnc.export.nodes import NodeSpec
from bnnc.export.parity import MAX_TIE_SHARE, Parity, check_parity
from bnnc.export.pixels import pixel_model
from bnnc.export.requantize import fold_requantization
from bnnc.layers import binary_layers, set_submodule
from bnnc.loading import ModelFile, load_checkpoint
from bnnc.outputs import atomic_write, check_outputs
from bnnc.resolve import data_for_model, guess_warning, require_binarized
from bnnc.version import __version__

OPSET = 18  # BitwiseAnd needs 18; every op used has been in ONNX since 18 or earlier
INPUT_NAME = "input"


@dataclass
class ExportResult:
    """What was written and how it was checked."""

    path: Path | None
    onnx_bytes: int
    theoretical_bytes: int
    mode: str                                  # "integer" or "float"
    uint8_input: bool
    binary_nodes: int
    fused_chains: int
    parity: list[Parity] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    format: str = "onnx"
    files: list[Path] = field(default_factory=list)  # every file written (an IR is two)
    xnor_layers: int | None = None                    # OpenVINO: layers run as XNOR-popcount
    c: dict[str, Any] | None = None                   # C: name, weight/RAM bytes, the object's size, checked

    @property
    def size_ratio(self) -> float:
        """File size over the theoretical packed size (1.0 = nothing wasted)."""
        return self.onnx_bytes / self.theoretical_bytes if self.theoretical_bytes else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path) if self.path else None, "onnx_bytes": self.onnx_bytes,
            "theoretical_bytes": self.theoretical_bytes, "size_ratio": round(self.size_ratio, 4),
            "mode": self.mode, "uint8_input": self.uint8_input, "binary_nodes": self.binary_nodes,
            "fused_chains": self.fused_chains,
            "parity": [p.to_dict() for p in self.parity], "notes": self.notes, "format": self.format,
            "files": [str(f) for f in self.files], "xnor_layers": self.xnor_layers, "c": self.c,
        }


class _ExportableAdaptivePool(nn.Module):
    """An adaptive pool as the fixed-window op it is at this input size, where the TorchScript exporter refuses
    the pool itself (it can't see the size of a binary layer's output):

    * an output that is a whole multiple of the input (a VGG's 7x7 pool after a 1x1 map, at small input
      sizes): each output cell takes exactly one input cell, a nearest-neighbour upsampling;
    * max pooling to an output that divides the input (28 -> 7): ``MaxPool`` with kernel = stride = in/out,
      the same windows (the maximum is exact in any order; an average is left alone: its sum's order counts).
    """

    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = 1 if isinstance(self.pool, (nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)) else 2
        size = self.pool.output_size
        size = (size,) * dims if isinstance(size, int) else tuple(size)
        src = tuple(int(s) for s in x.shape[-dims:])  # constants in the graph: only the batch is dynamic
        out = tuple(s if o is None else int(o) for o, s in zip(size, src, strict=True))
        if out != src and all(o % s == 0 for o, s in zip(out, src, strict=True)):
            return F.interpolate(x, scale_factor=tuple(float(o // s) for o, s in zip(out, src, strict=True)),
                                 mode="nearest")
        if isinstance(self.pool, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)) and not self.pool.return_indices \
                and all(s % o == 0 for o, s in zip(out, src, strict=True)):
            window = tuple(s // o for o, s in zip(out, src, strict=True))
            return (F.max_pool1d if dims == 1 else F.max_pool2d)(x, window, window)
        return self.pool(x)


_ADAPTIVE_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)


def _as_batchnorm(m: nn.Module) -> nn.Module:
    """An eval InstanceNorm with running statistics: torch computes it as a BatchNorm with those statistics (on
    the batch folded into channels), so a BatchNorm is the same arithmetic — and the TorchScript exporter refuses
    the InstanceNorm at a dynamic batch size."""
    bn = (nn.BatchNorm1d if isinstance(m, nn.InstanceNorm1d) else nn.BatchNorm2d)(m.num_features, m.eps,
                                                                                  affine=m.affine)
    bn.load_state_dict({k: v for k, v in m.state_dict().items()})
    return bn.eval()


def _with_affine(m: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """A BatchNorm without affine parameters as one with weight 1 and bias 0: the same arithmetic (torch's kernel
    takes a missing weight as 1 and a missing bias as 0), and the TorchScript exporter needs the channel count a
    weight gives where the input's shape is unknown (after a binary layer)."""
    bn = type(m)(m.num_features, m.eps, m.momentum, affine=True, track_running_stats=True)
    bn.load_state_dict({**m.state_dict(), "weight": torch.ones(m.num_features), "bias": torch.zeros(m.num_features)})
    return bn.train(m.training)


def exportable(model: nn.Module) -> nn.Module:
    """``model`` with the modules the TorchScript exporter can't express swapped for exact equivalents."""
    for name, m in list(model.named_modules()):
        if type(m) in _ADAPTIVE_POOLS and name:
            set_submodule(model, name, _ExportableAdaptivePool(m))
        elif type(m) in (nn.InstanceNorm1d, nn.InstanceNorm2d) and m.track_running_stats and not m.training and name:
            set_submodule(model, name, _as_batchnorm(m))
        elif type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) and not m.affine and m.track_running_stats and name:
            set_submodule(model, name, _with_affine(m))
    return model


@contextlib.contextmanager
def _no_graph_dump() -> Iterator[None]:
    """Keep the TorchScript exporter from writing its whole IR graph (hundreds of lines) to stderr when it fails:
    its logging switch tests a function for truth (torch 2.13's ``setup_onnx_logging``), so it is always on. The
    error still says what failed, in one line."""
    try:
        utils: Any = importlib.import_module("torch.onnx._internal.torchscript_exporter.utils")
    except ImportError:  # another torch: its own logging
        utils = None
    original = getattr(utils, "setup_onnx_logging", None)
    if original is None:
        yield
        return
    utils.setup_onnx_logging = lambda verbose: contextlib.nullcontext()
    try:
        yield
    finally:
        utils.setup_onnx_logging = original


def _torch_export(model: nn.Module, example: torch.Tensor, opset: int, custom: bool) -> onnx.ModelProto:
    """torch.onnx.export to memory: TorchScript exporter, fixed opset, dynamic batch dimension."""
    model = exportable(model)
    with torch.no_grad():
        out = model(example)
    n_out = len(out) if isinstance(out, (tuple, list)) else 1
    names = ["logits"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    buf = io.BytesIO()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # nn.MultiheadAttention's fused inference op has no ONNX form
    with warnings.catch_warnings(), _no_graph_dump():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        try:
            torch.onnx.export(
                model, (example,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                output_names=names, dynamic_axes={n: {0: "batch"} for n in [INPUT_NAME, *names]},
                custom_opsets={"bnnc": 1} if custom else None, do_constant_folding=True,
                training=torch.onnx.TrainingMode.PRESERVE,  # eval model; keeps BatchNorm out of FP32 convs
            )
        except Exception as e:  # noqa: BLE001 - the exporter's errors are long; one line and a hint
            raise ExportError(f"torch.onnx.export failed: {first_line(e, 240)}",
                              "the model uses an operation ONNX can't express; re-run with --debug") from e
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
    proto = onnx.load_from_string(buf.getvalue())
    _explicit_same_padding(proto)
    return proto


def _explicit_same_padding(proto: onnx.ModelProto) -> None:
    """Write out the pads of each ``Conv`` torch exports with ``auto_pad`` SAME (``padding="same"``): ONNX Runtime
    refuses a dilated one so ("Dilation not supported for AutoPadType::SAME_UPPER"). Only at stride 1 — the only
    stride torch allows "same" at — where the pads don't depend on the input's size."""
    for node in proto.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        mode = attrs.get("auto_pad", b"NOTSET")
        if node.op_type != "Conv" or mode not in (b"SAME_UPPER", b"SAME_LOWER") or "kernel_shape" not in attrs:
            continue
        kernel = list(attrs["kernel_shape"])
        if any(s != 1 for s in attrs.get("strides", [1] * len(kernel))):
            continue
        total = [d * (k - 1) for d, k in zip(attrs.get("dilations", [1] * len(kernel)), kernel, strict=True)]
        small = [t // 2 for t in total]
        big = [t - t // 2 for t in total]
        pads = small + big if mode == b"SAME_UPPER" else big + small  # UPPER: the odd pixel at the end
        kept = [a for a in node.attribute if a.name != "auto_pad"]
        del node.attribute[:]
        node.attribute.extend([*kept, helper.make_attribute("pads", pads)])


def _replace_placeholders(proto: onnx.ModelProto, specs: list[NodeSpec]) -> None:
    graph = proto.graph
    nodes: list[onnx.NodeProto] = []
    shared: dict[str, Any] = {}
    for node in graph.node:
        if node.domain != "bnnc":
            nodes.append(node)
            continue
        index = next(a.i for a in node.attribute if a.name == "index")
        spec = specs[index]
        new_nodes, inits = build(spec, node.input[0], node.output[0], spec.layer.weight.dim() if spec.is_conv else 2,
                                 shared)
        nodes.extend(new_nodes)
        graph.initializer.extend(inits)
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [op for op in proto.opset_import if op.domain != "bnnc"]
    del proto.opset_import[:]
    proto.opset_import.extend(kept)
    del graph.value_info[:]


def _prune(proto: onnx.ModelProto) -> None:
    """Drop what nothing reads: nodes none of whose outputs reach the graph's outputs (the TorchScript
    exporter leaves an Identity per deduplicated parameter of every folded BatchNorm), then unused
    initializers. Kept in the file, they would cost bytes for nothing."""
    needed = {o.name for o in proto.graph.output}
    live = []
    for node in reversed(proto.graph.node):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(node.input)
    del proto.graph.node[:]
    proto.graph.node.extend(reversed(live))
    keep = [i for i in proto.graph.initializer if i.name in needed]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)


def example_input(input_shape: tuple[int, ...], n: int = 2, uint8: bool = False) -> torch.Tensor:
    """Seeded inputs: normal floats, or uniform uint8 pixels."""
    gen = torch.Generator().manual_seed(0)
    if uint8:
        return torch.randint(0, 256, (n, *input_shape), generator=gen, dtype=torch.uint8)
    return torch.randn(n, *input_shape, generator=gen)


def to_onnx(model: nn.Module, input_shape: tuple[int, ...], *, integer: bool = True, uint8_input: bool = False,
            opset: int = OPSET) -> tuple[onnx.ModelProto, Lowered]:
    """The ONNX model of the binarized ``model`` (in memory), and the lowering it came from.

    With ``uint8_input`` the model must be a :class:`PixelModel` (see :func:`pixel_model`).
    """
    model = model.cpu().float().eval()
    example = example_input(input_shape, uint8=uint8_input)
    lowered = lower(model, example, integer=integer)
    proto = _torch_export(lowered.model, example, opset, custom=bool(lowered.specs))
    _replace_placeholders(proto, lowered.specs)
    match_torch_batchnorm(proto)
    if integer:
        fold_requantization(proto)
    _prune(proto)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"the exported graph is invalid: {first_line(e, 240)}",
                          "this is a bnnc bug: re-run with --debug and report it") from e
    del proto.graph.value_info[:]  # runtimes infer shapes themselves; this keeps the file small
    return proto, lowered


def payload_bytes(proto: onnx.ModelProto) -> int:
    """The data an exported model stores — every initializer and constant (1-bit packed weights, folded
    thresholds, FP32 parameters of the layers kept real-valued) — without the graph that connects them.
    A lower bound of the file's size: what bnnc calls the theoretical size, and what ``convert`` predicts."""
    tensors = [*proto.graph.initializer, *(a.t for n in proto.graph.node for a in n.attribute if a.HasField("t"))]
    return sum(numpy_helper.to_array(t).nbytes for t in tensors)


def layer_payload(proto: onnx.ModelProto, lowered: Lowered, layers: Sequence[str]) -> dict[str, int | None]:
    """What the export ``proto`` (made by ``lowered``) stores for each of ``layers``: the tensors of its subgraph
    (``b3:weight_bits`` is placeholder 3's), or for a layer left to torch's own export, its parameters
    (``name.weight``, ``name.bias``). None where no tensor is found that way (a parameter the exporter renamed)."""
    prefixes = {f"b{spec.index}": spec.name for spec in lowered.specs}
    found: dict[str, int] = {}
    for t in proto.graph.initializer:
        prefix, colon, _ = t.name.partition(":")
        owner = prefixes.get(prefix) if colon else t.name.rpartition(".")[0]
        if owner is not None:
            found[owner] = found.get(owner, 0) + numpy_helper.to_array(t).nbytes
    return {name: found.get(name) for name in layers}


def predicted_payload(model: nn.Module, input_shape: tuple[int, ...]) -> int | None:
    """:func:`payload_bytes` of ``model``'s default export, built in memory; None if it can't be exported."""
    try:
        return payload_bytes(to_onnx(copy.deepcopy(model), input_shape)[0])
    except ExportError:
        return None


def to_fp32_onnx(model: nn.Module, input_shape: tuple[int, ...], opset: int = OPSET) -> onnx.ModelProto:
    """The plain FP32 export of ``model``, with the same exporter settings (the baseline)."""
    model = copy.deepcopy(model).cpu().float().eval()
    return _torch_export(model, torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0)),
                         opset, custom=False)


def _metadata_dict(loaded: ModelFile | None, mode: str, input_shape: tuple[int, ...],
                   preprocessing: dict[str, Any] | None, uint8_input: bool) -> dict[str, str]:
    """What an exported model records about itself (ONNX metadata_props, OpenVINO rt_info)."""
    meta = {"bnnc.version": __version__, "bnnc.mode": mode, "bnnc.input_shape": json.dumps(list(input_shape)),
            "bnnc.input": "uint8 pixels, preprocessing inside" if uint8_input else "preprocessed float32"}
    if loaded is not None:
        binarized = loaded.binarized
        meta["bnnc.checkpoint_sha256"] = loaded.sha256
        meta["bnnc.plan"] = json.dumps(binarized.plan.to_dict() if binarized else None, separators=(",", ":"))
        if binarized is not None and binarized.source is not None:
            meta["bnnc.source_sha256"] = binarized.source.sha256
    if preprocessing:
        meta["bnnc.preprocessing"] = json.dumps(preprocessing, separators=(",", ":"))
        meta["bnnc.class_names"] = json.dumps(preprocessing.get("class_names", []))
    return meta


def _metadata(proto: onnx.ModelProto, loaded: ModelFile | None, mode: str, input_shape: tuple[int, ...],
              preprocessing: dict[str, Any] | None, uint8_input: bool) -> None:
    proto.producer_name = "bnnc"
    proto.producer_version = __version__
    for k, v in _metadata_dict(loaded, mode, input_shape, preprocessing, uint8_input).items():
        proto.metadata_props.add(key=k, value=v)


def check_inputs(input_shape: tuple[int, ...], splits: DataSplits | None, samples: int,
                 uint8: bool = False) -> tuple[torch.Tensor, str]:
    """Inputs for the parity check: the data's evaluation split if given, else seeded random inputs.

    With ``uint8`` the inputs are raw pixels (the data's, recovered from its normalised form).
    """
    if splits is not None:
        x = splits.val.tensors[0][:samples]
        if uint8:
            x = splits.preprocessing.pixels(x)
        return x, f"{len(x)} samples of {splits.source}"
    kind = "random uint8 pixels" if uint8 else "random normal inputs"
    return example_input(input_shape, samples, uint8), f"{samples} {kind} (seed 0)"


@dataclass
class Source:
    """What an export starts from: the model (behind its preprocessing with ``uint8_input``), where it
    came from, the data for the check and the files to write."""

    net: nn.Module
    loaded: ModelFile | None
    splits: DataSplits | None
    preprocessing: dict[str, Any] | None
    input_shape: tuple[int, ...]
    outputs: list[Path]
    notes: list[str] = field(default_factory=list)


def prepare(model: str | os.PathLike[str] | nn.Module, output: str | os.PathLike[str] | None, suffix: str, *,
            input_shape: tuple[int, ...] | None, check: bool, data: DataSpec | None, check_samples: int,
            uint8_input: bool, preprocessing: dict[str, Any] | None, overwrite: bool, trust_model: bool,
            side_suffixes: tuple[str, ...] = ()) -> Source:
    """Load and check what an export needs, before any work: the outputs (``output``, default
    ``MODEL{suffix}`` beside a checkpoint, and the same name with each of ``side_suffixes``) may be
    written, the model is binarized, its input shape known."""
    def files(main: Path) -> list[Path]:
        return [main, *(main.with_suffix(x) for x in side_suffixes)]

    loaded: ModelFile | None = None
    splits: DataSplits | None = None
    if isinstance(model, nn.Module):
        net = model
        outs = files(Path(output)) if output is not None else []
        check_outputs(outs, inputs=(data,), overwrite=overwrite)
        if data is not None and check:
            splits = load_data(data, preprocessing=Preprocessing.from_dict(preprocessing) if preprocessing else None,
                               input_shape=input_shape)
    else:
        src = Path(model)
        outs = files(Path(output) if output is not None else src.with_suffix(suffix))
        check_outputs(outs, inputs=(src, data), overwrite=overwrite)
        loaded = require_binarized(load_checkpoint(src, trust_model=trust_model))
        net = loaded.model
        if data is not None and check:
            splits = data_for_model(data, loaded, input_shape=input_shape)
        preprocessing = preprocessing or loaded.preprocessing or (splits.preprocessing.to_dict() if splits else None)
        if input_shape is None:
            input_shape = splits.preprocessing.input_shape if splits else (
                loaded.input_shape or loaded.binarized.plan.input_shape)  # type: ignore[union-attr]
    if input_shape is None:
        raise ExportError("the input shape is unknown", "pass input_shape=(C, H, W) (without the batch)")
    if not binary_layers(net):
        raise ExportError("the model has no binary layer", "convert it first (bnnc convert)")
    if check_samples < 1:
        raise ExportError(f"check_samples must be at least 1, got {check_samples}")
    notes = []
    if uint8_input:
        if not preprocessing:
            raise ExportError("--uint8-input needs the model's preprocessing (mean, std, pixel scale), and "
                              "this checkpoint has none", "convert with --data (and --mean/--std if the model was "
                              "trained with a normalisation) so it is recorded")
        if splits is not None and splits.guessed and not (loaded and loaded.preprocessing):
            notes.append("--uint8-input: " + guess_warning(
                splits, "convert again with --data --mean M --std S so the checkpoint records it"))
        net = pixel_model(net, preprocessing)
    return Source(net, loaded, splits, preprocessing, tuple(input_shape), outs, notes)


def require_match(parity: Parity, kind: str) -> None:
    """Raise unless the exported model (``kind``: "ONNX", "OpenVINO") passed its parity check."""
    if parity.ok:
        return
    why = (f"{parity.unexplained} of {parity.samples} samples differ by more than {parity.rtol:.0e} "
           "(relative) with no float-rounding tie to explain it" if parity.unexplained else
           f"{parity.at_ties} of {parity.samples} samples differ at float-rounding ties, more than {MAX_TIE_SHARE:.0%}")
    raise ExportError(f"the {kind} model doesn't match the PyTorch model in {parity.runtime}: {why}; nothing written",
                      "this is a bnnc bug: re-run with --debug and report it (--no-check writes it anyway)")


def export_onnx(
    model: str | os.PathLike[str] | nn.Module,
    output: str | os.PathLike[str] | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    float_ops: bool = False,
    check: bool = True,
    data: DataSpec | None = None,
    check_samples: int = defaults.CHECK_SAMPLES,
    reference_check: bool = False,
    uint8_input: bool = False,
    preprocessing: dict[str, Any] | None = None,
    overwrite: bool = False,
    trust_model: bool = False,
) -> ExportResult:
    """Export the binarized ``model`` (a bnnc checkpoint path or a converted ``nn.Module``) to ONNX.

    ``output`` defaults to ``NAME.onnx`` beside a checkpoint; for a module without ``output``
    nothing is written (the result still carries the size and the checks). With ``check`` (the
    default) the ONNX model runs in ONNX Runtime on ``check_samples`` inputs — from ``data`` if
    given — and must match the PyTorch model: logits within 1e-4 relative, except on samples
    where a float-rounding tie explains the difference (see :class:`~bnnc.export.parity.Parity`);
    otherwise nothing is written. ``reference_check`` adds ``onnx.reference`` as a second runtime.
    ``float_ops`` exports +-1 as float tensors for runtimes without integer kernels.
    ``uint8_input`` makes the ONNX model take raw uint8 pixels: the preprocessing (recorded in the
    checkpoint, or ``preprocessing`` for a module) runs inside it and a first binary-weight Linear
    layer runs on the integer path; parity is then checked on pixels, against ``model(preprocess(pixels))``.
    """
    src = prepare(model, output, ".onnx", input_shape=input_shape, check=check, data=data,
                  check_samples=check_samples, uint8_input=uint8_input, preprocessing=preprocessing,
                  overwrite=overwrite, trust_model=trust_model)
    net, loaded, splits, preprocessing, input_shape, out = (
        src.net, src.loaded, src.splits, src.preprocessing, src.input_shape, src.outputs[0] if src.outputs else None)

    mode = "float" if float_ops else "integer"
    proto, lowered = to_onnx(net, tuple(input_shape), integer=not float_ops, uint8_input=uint8_input)
    _metadata(proto, loaded, mode, tuple(input_shape), preprocessing, uint8_input)
    blob = proto.SerializeToString()
    result = ExportResult(
        path=None, onnx_bytes=len(blob), theoretical_bytes=payload_bytes(proto), mode=mode, uint8_input=uint8_input,
        binary_nodes=len(lowered.specs), fused_chains=sum(s.fused is not None for s in lowered.specs),
        notes=[*src.notes, *lowered.notes],
    )
    if check:
        x, described = check_inputs(tuple(input_shape), splits, check_samples, uint8_input)
        runtimes = ["onnxruntime", "reference"] if reference_check else ["onnxruntime"]
        for runtime in runtimes:
            parity = check_parity(blob, net, x, inputs=described, runtime=runtime)
            result.parity.append(parity)
            require_match(parity, "ONNX")
    if out is not None:
        result.path = atomic_write(out, lambda f: f.write(blob), overwrite=overwrite)
        result.files = [result.path]
    return result
