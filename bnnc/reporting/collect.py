"""``report()``: measure a binarized checkpoint against its FP32 source and ORT int8 on the same data and
machine, in one call — sizes, accuracy, latency (and OpenVINO when installed) — into a :class:`Report`."""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from bnnc import defaults
from bnnc.classes import predictions
from bnnc.data import DataSpec, DataSplits
from bnnc.errors import BnncError
from bnnc.events import OnEvent, Stage, emitter
from bnnc.export import ExportError, csource, layer_payload, ov_runtime, payload_bytes, to_fp32_onnx, to_onnx
from bnnc.export import openvino as ov_export
from bnnc.export.ctoolchain import CORTEX_M4, FLAGS, compile_library, find_compiler, object_size
from bnnc.export.lowering import Lowered
from bnnc.export.pixels import pixel_model
from bnnc.loading import ModelFile, load_checkpoint
from bnnc.measure import (
    CALIBRATION_SAMPLES,
    INT8_STATIC,
    has_convolutions,
    int8_dynamic,
    int8_static,
    latencies,
    onnx_accuracy,
    torch_accuracy,
)
from bnnc.planning import Plan
from bnnc.reporting.document import SCHEMA_VERSION, Report, ReportError
from bnnc.reporting.limits import Limits, check_limits
from bnnc.resolve import data_for_model, load_fp32_source, require_binarized
from bnnc.training import history_path_for
from bnnc.version import __version__


def _bnnc_onnx_input(proto: onnx.ModelProto) -> str:
    meta = {p.key: p.value for p in proto.metadata_props}
    return "uint8" if meta.get("bnnc.input", "").startswith("uint8") else "float"


def _check_onnx(path: Path, loaded: ModelFile, shape: tuple[int, ...]) -> tuple[onnx.ModelProto, Lowered]:
    """The ONNX model at ``path``, refused unless bnnc exported it from this very checkpoint: its
    metadata names the checkpoint's SHA-256, and its graph is, byte for byte, the graph a fresh export
    of the checkpoint in the mode it claims makes (metadata can be copied onto a forged model; the
    graph can't be faked and still measured as ours).

    External data is never followed, in subgraphs either: bnnc writes self-contained files, and a
    reference to another file (``../../secret``) would make the report read it.
    """
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as e:  # noqa: BLE001 - any parse failure: not an ONNX model
        raise ReportError(f"{path} is not a readable ONNX model ({type(e).__name__})",
                          "pass the file bnnc export wrote, or drop --onnx to export one") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    if "bnnc.version" not in meta:
        raise ReportError(f"{path} was not written by bnnc export (no bnnc metadata)",
                          "export it with `bnnc export`, or drop --onnx to export one")
    if meta.get("bnnc.checkpoint_sha256") != loaded.sha256:
        raise ReportError(f"{path} was exported from a different checkpoint than the one given",
                          "re-export it from this checkpoint, or drop --onnx")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in _all_tensors(proto.graph)):
        raise ReportError(f"{path} refers to tensors in other files, which bnnc export never writes",
                          "re-export it with `bnnc export`, or drop --onnx")
    uint8 = meta.get("bnnc.input", "").startswith("uint8")
    net = loaded.model
    if uint8:
        if not loaded.preprocessing:
            raise ReportError(f"{path} takes uint8 pixels, but the checkpoint records no preprocessing",
                              "re-export it with `bnnc export`, or drop --onnx")
        net = pixel_model(net, loaded.preprocessing)
    try:
        fresh, lowered = to_onnx(net, shape, integer=meta.get("bnnc.mode") != "float", uint8_input=uint8)
    except ExportError:
        fresh = None
    if fresh is None or fresh.graph.SerializeToString() != proto.graph.SerializeToString():
        raise ReportError(f"{path} is not what bnnc export makes of this checkpoint (its graph differs), though "
                          "its metadata says so", "re-export it with `bnnc export`, or drop --onnx")
    return proto, lowered


def _all_tensors(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
    """Every tensor stored in ``graph``: initializers and constants, subgraphs (If, Loop, Scan) included."""
    tensors = list(graph.initializer)
    for node in graph.node:
        for a in node.attribute:
            tensors += [a.t] if a.HasField("t") else []
            tensors += list(a.tensors)
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                tensors += _all_tensors(sub)
    return tensors


def report(
    model_path: str | os.PathLike[str],
    data: DataSpec,
    *,
    onnx_path: str | os.PathLike[str] | None = None,
    fp32_path: str | os.PathLike[str] | None = None,
    limits: Limits | None = None,
    batches: tuple[int, ...] = (1, defaults.REPORT_BATCH),
    threads: int | None = None,
    samples: int | None = None,
    rounds: int = 5,
    repeats: int = 20,
    openvino: bool | None = None,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    trust_model: bool = False,
    on_event: OnEvent | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Report:
    """Measure the binarized checkpoint ``model_path`` against its FP32 source and ORT int8 on ``data``.

    ``onnx_path``: the bnnc ONNX to measure (refused unless exported from this checkpoint);
    without it the model is exported to memory. ``fp32_path``: the FP32 source, if it isn't at
    its recorded path or beside the checkpoint (a state dict there takes ``arch``/``arch_kwargs``,
    else the architecture the checkpoint recorded). Accuracy uses the data's evaluation split (the
    first ``samples`` of it); latency the first ``b`` of those inputs for each ``b`` in ``batches``.
    ``openvino``: also measure the bnnc OpenVINO IR (XNOR-popcount) and the FP32 model in OpenVINO at
    the CPU's default precision — by default when the openvino package is installed; True requires it.
    ``on_event`` receives a :class:`~bnnc.events.Stage` as each measurement begins (``on_progress``, its old
    name taking the text, is deprecated).
    """
    emit = emitter(on_event, "report", on_progress=(on_progress, Stage, lambda e: (e.text,)))
    limits = limits or Limits()
    limits.require_openvino(openvino, ov_runtime.available())

    def progress(text: str) -> None:
        emit(Stage(text))

    path = Path(model_path)
    progress(f"loading {path}")
    loaded = require_binarized(load_checkpoint(path, trust_model=trust_model, allow_arch=arch))
    source = load_fp32_source(loaded, fp32_path, arch=arch, arch_kwargs=arch_kwargs, trust_model=trust_model)
    progress("loading the data")
    splits = data_for_model(data, loaded)
    x, y = splits.val.tensors
    x, y = (x[:samples], y[:samples]) if samples is not None else (x, y)

    progress("exporting the ONNX models (FP32, ORT int8, bnnc)")
    models = _onnx_models(loaded, source.model.eval(), splits, x, onnx_path)
    progress(f"accuracy on {len(x):,} samples")
    accuracy, torch_predictions = _accuracy(models, loaded.model, source.model, x, y)
    threads = threads or torch.get_num_threads()
    ov_doc = None
    if openvino is not False and ov_runtime.available():
        progress("exporting the OpenVINO models (bnnc IR, FP32 IR)")
        ov_doc = _add_openvino(models, loaded.model, x, y, torch_predictions, threads)
    elif openvino:
        raise BnncError("the OpenVINO rows need the openvino package", "pip install 'bnnc[openvino]'")
    by_batch = {}
    for b in batches:
        progress(f"latency at batch {b} ({threads} threads)")
        by_batch[str(b)] = _latency_row(models, b, threads, rounds, repeats)
    c_doc = None
    if find_compiler() is not None:
        progress("compiling and measuring the C model")
        c_doc = _c_section(loaded.model, x, y, torch_predictions, by_batch.get("1"), rounds)

    plan = loaded.binarized.plan  # type: ignore[union-attr]
    doc: dict[str, Any] = {
        "schema": "bnnc-report", "schema_version": SCHEMA_VERSION, "bnnc_version": __version__,
        "model": {"path": str(path), "sha256": loaded.sha256, "source_path": str(source.path),
                  "source_sha256": source.sha256, "onnx_path": str(onnx_path) if onnx_path else None},
        "data": {"source": splits.source, "samples": len(x)},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": threads,
                    "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "size": _sizes(models),
        "accuracy": accuracy,
        "int8": {"baseline": INT8_STATIC, "calibration_samples": models.calibration_samples,
                 "dynamic_measured": "int8_dynamic" in models.runnable},
        "latency": {"threads": threads, "by_batch": by_batch},
        "layers": _layers(plan, source.model, models, loaded.binarized.sensitivity),  # type: ignore[union-attr]
        "totals": _totals(plan),
        "openvino": ov_doc,
        "c": c_doc,
        "finetune": _history(path),
    }
    return Report(doc, check_limits(doc, limits))


@dataclass
class _Models:
    """The models measured side by side: ONNX files (bytes) and, when measured, OpenVINO sessions; each with
    the inputs it takes (the bnnc ONNX may take uint8 pixels)."""

    bnnc_proto: onnx.ModelProto
    lowered: Lowered                    # what made bnnc_proto: whose tensors are whose layer's
    runnable: dict[str, Any]            # name -> ONNX bytes or an OpenVINO session
    inputs: dict[str, np.ndarray]       # name -> its evaluation inputs
    calibration_samples: int

    def onnx(self, name: str) -> bytes:
        return self.runnable[name]


def _onnx_models(loaded: ModelFile, fp32: nn.Module, splits: DataSplits, x: torch.Tensor,
                 onnx_path: str | os.PathLike[str] | None) -> _Models:
    """FP32 ONNX, ORT's static int8 of it (and dynamic int8 without convolutions), and the bnnc ONNX:
    the checked file at ``onnx_path``, else exported to memory."""
    shape = splits.preprocessing.input_shape
    if onnx_path is not None:
        bnnc_proto, lowered = _check_onnx(Path(onnx_path), loaded, shape)
        bnnc_blob = Path(onnx_path).read_bytes()
    else:
        bnnc_proto, lowered = to_onnx(loaded.model, shape)
        bnnc_blob = bnnc_proto.SerializeToString()
    fp32_blob = to_fp32_onnx(fp32, shape).SerializeToString()
    pool = splits.train if len(splits.train) else splits.val  # the int8 baseline calibrates on training data
    calibration = pool.tensors[0][:CALIBRATION_SAMPLES].numpy()
    blobs = {"fp32": fp32_blob, "int8": int8_static(fp32_blob, calibration), "bnnc": bnnc_blob}
    if not has_convolutions(fp32_blob):  # dynamic int8 competes only without convolutions (ConvInteger is slow)
        blobs["int8_dynamic"] = int8_dynamic(fp32_blob)
    xs = x.numpy()
    bnnc_x = splits.preprocessing.pixels(x).numpy() if _bnnc_onnx_input(bnnc_proto) == "uint8" else xs
    return _Models(bnnc_proto, lowered, blobs, {k: bnnc_x if k == "bnnc" else xs for k in blobs}, len(calibration))


def _accuracy(models: _Models, binarized: nn.Module, fp32: nn.Module, x: torch.Tensor, y: torch.Tensor
              ) -> tuple[dict[str, Any], np.ndarray]:
    """The ``accuracy`` section, and the PyTorch binarized model's predictions (what exports must agree with)."""
    labels = y.numpy()
    acc_fp32, _ = torch_accuracy(fp32, x, y)
    acc_torch, pred_torch = torch_accuracy(binarized, x, y)
    acc_bnnc, pred_bnnc = onnx_accuracy(models.onnx("bnnc"), models.inputs["bnnc"], labels)
    acc_int8, _ = onnx_accuracy(models.onnx("int8"), models.inputs["int8"], labels)
    section = {
        "fp32": acc_fp32, "binarized_torch": acc_torch, "bnnc_onnx": acc_bnnc, "int8_onnx": acc_int8,
        "drop_pt": (acc_fp32 - acc_bnnc) * 100, "int8_drop_pt": (acc_fp32 - acc_int8) * 100,
        "onnx_torch_agreement": float((pred_bnnc == pred_torch).mean()),
    }
    if "int8_dynamic" in models.runnable:
        section["int8_dynamic_onnx"] = onnx_accuracy(models.onnx("int8_dynamic"), models.inputs["int8"], labels)[0]
    return section, pred_torch


def _add_openvino(models: _Models, binarized: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  torch_predictions: np.ndarray, threads: int) -> dict[str, Any]:
    """The ``openvino`` section; the two IRs join ``models`` for the latency rows (unless they failed to
    export: then the section says why, and the ONNX Runtime rows still stand)."""
    shape = tuple(x.shape[1:])
    try:
        ir, record, _ = ov_export.to_openvino(binarized, shape)
        fp32_ov = ov_runtime.fp32_ir(models.onnx("fp32"), shape)
    except ExportError as e:
        return {"version": ov_runtime.version(), "error": e.message}
    xs, labels = x.numpy(), y.numpy()
    models.runnable["bnnc_openvino"] = ov_runtime.OpenVINOSession(ir, threads=threads)
    models.runnable["fp32_openvino"] = ov_runtime.OpenVINOSession(fp32_ov, threads=threads, precision=None)
    models.inputs.update(bnnc_openvino=xs, fp32_openvino=xs)
    acc_ov, pred_ov = onnx_accuracy(models.runnable["bnnc_openvino"], xs, labels)
    acc_fp32_ov, _ = onnx_accuracy(models.runnable["fp32_openvino"], xs, labels)
    return {"version": ov_runtime.version(), "bnnc_ir_bytes": ir.size, "fp32_ir_bytes": fp32_ov.size,
            "xnor_layers": len(record.xnor), "notes": record.notes,
            "accuracy": {"bnnc": acc_ov, "fp32_default_precision": acc_fp32_ov,
                         "torch_agreement": float((pred_ov == torch_predictions).mean())}}


def _c_section(binarized: nn.Module, x: torch.Tensor, y: torch.Tensor, torch_predictions: np.ndarray,
               batch1: dict[str, Any] | None, rounds: int) -> dict[str, Any]:
    """The ``c`` section: the C model compiled here (accuracy, one-thread latency at batch 1 timed inside C,
    the object's flash and RAM), and for a Cortex-M4 when ``arm-none-eabi-gcc`` is installed."""
    compiler = find_compiler()
    shape = tuple(x.shape[1:])
    try:
        program = csource.generate(binarized, shape, "model")
        with tempfile.TemporaryDirectory() as tmp:
            lib = compile_library(program, Path(tmp))
            logits, _ = lib.run(x.numpy())
            latency_ms = lib.latency_us(x[:1].numpy(), min_seconds=0.05 * rounds, rounds=max(rounds, 3)) / 1e3
        host = object_size(program)
        m4 = (object_size(program, compiler="arm-none-eabi-gcc",
                          flags=CORTEX_M4) if shutil.which("arm-none-eabi-gcc") else None)
    except ExportError as e:
        return {"compiler": compiler, "error": e.message}
    predicted = predictions(logits)
    doc: dict[str, Any] = {
        "compiler": compiler, "flags": " ".join((*FLAGS, "-march=native")), "weight_bytes": program.weight_bytes,
        "ram_bytes": program.ram_bytes, "object": host.to_dict() if host else None,
        "cortex_m4": m4.to_dict() if m4 else None,
        "accuracy": float((predicted == y.numpy()).mean()),
        "torch_agreement": float((predicted == torch_predictions).mean()), "latency_batch1_ms": latency_ms}
    if batch1 is not None:
        int8 = batch1["int8" if batch1["int8_fastest"] == "static" else "int8_dynamic"]["median_ms"]
        doc.update(speedup_vs_fp32=batch1["fp32"]["median_ms"] / latency_ms, speedup_vs_int8=int8 / latency_ms)
        if "bnnc_openvino" in batch1:
            doc["speedup_vs_openvino"] = batch1["bnnc_openvino"]["median_ms"] / latency_ms
    return doc


def _latency_row(models: _Models, batch: int, threads: int, rounds: int, repeats: int) -> dict[str, Any]:
    """Every model's latency at ``batch``, interleaved, and the speedups of bnnc (ONNX and OpenVINO)."""
    feeds = {k: v[:batch] for k, v in models.inputs.items()}
    lat = latencies(models.runnable, feeds, threads=threads, rounds=rounds, repeats=repeats)
    fastest_int8 = min(("int8", "int8_dynamic"), key=lambda k: lat[k].median_ms if k in lat else float("inf"))
    int8_ms = lat[fastest_int8].median_ms
    row = {**{k: v.to_dict() for k, v in lat.items()},
           "speedup_vs_fp32": lat["fp32"].median_ms / lat["bnnc"].median_ms,
           "speedup_vs_int8": int8_ms / lat["bnnc"].median_ms,
           "int8_fastest": "static" if fastest_int8 == "int8" else "dynamic"}
    if "bnnc_openvino" in lat:
        ov_ms = lat["bnnc_openvino"].median_ms
        fastest = min(lat[k].median_ms for k in ("fp32", fastest_int8, "fp32_openvino"))
        row.update(openvino_speedup_vs_fp32=lat["fp32"].median_ms / ov_ms, openvino_speedup_vs_int8=int8_ms / ov_ms,
                   openvino_speedup_vs_fastest_alternative=fastest / ov_ms)
    return row


def _sizes(models: _Models) -> dict[str, Any]:
    fp32, int8, bnnc = (len(models.onnx(k)) for k in ("fp32", "int8", "bnnc"))
    sizes = {"fp32_onnx_bytes": fp32, "int8_onnx_bytes": int8, "bnnc_onnx_bytes": bnnc,
             "theoretical_bytes": payload_bytes(models.bnnc_proto),
             "compression_vs_fp32": fp32 / bnnc, "compression_vs_int8": int8 / bnnc}
    if "int8_dynamic" in models.runnable:
        sizes["int8_dynamic_onnx_bytes"] = len(models.onnx("int8_dynamic"))
    return sizes


def _layers(plan: Plan, fp32: nn.Module, models: _Models, sensitivity: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The plan's layers, each with its bytes in FP32 (its own parameters, float32) and what the bnnc export stores
    for it (1-bit weights and folded thresholds, or the parameters of a layer kept; None where not known), and the
    accuracy drop of binarizing it alone, in points, where ``convert --sensitivity`` measured it."""
    stored = layer_payload(models.bnnc_proto, models.lowered, [layer.name for layer in plan.layers])
    drops = {s["name"]: s["accuracy_drop"] * 100 for s in (sensitivity or {}).get("layers", [])}
    rows = []
    for layer in plan.layers:
        own = fp32.get_submodule(layer.name).parameters(recurse=False)
        rows.append({"name": layer.name, "kind": layer.kind, "precision": layer.precision.value, "params": layer.params,
                     "bits": layer.precision.bits, "macs": layer.macs, "reason": layer.reason,
                     "fp32_bytes": sum(p.numel() * 4 for p in own), "bytes": stored[layer.name],
                     "drop_alone_pt": drops.get(layer.name)})
    return rows


def _totals(plan: Plan) -> dict[str, Any]:
    t = plan.totals()
    return {"params": t.params, "binary_params": t.binary_weights, "macs": t.macs,
            "binary_mac_share": t.binary_mac_share, "binary_weight_mac_share": t.binary_weight_mac_share}


def _history(path: Path) -> dict[str, Any] | None:
    """The fine-tuning history written beside the checkpoint, if there is one."""
    hist = history_path_for(path)
    if not hist.is_file():
        return None
    try:
        doc = json.loads(hist.read_text())
        epochs = [{"epoch": e["epoch"], "val_accuracy": e["val_accuracy"], "train_loss": e["train_loss"],
                   "seconds": e["seconds"]} for e in doc.get("epochs", [])]
        return {"best_epoch": doc.get("best_epoch"), "best_val_accuracy": doc.get("best_val_accuracy"),
                "seconds": sum(e["seconds"] for e in epochs), "epochs": epochs}
    except (ValueError, KeyError, TypeError):
        return None
