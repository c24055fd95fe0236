"""``report``: size, accuracy and speed of a binarized model against FP32 and ORT int8, measured.

Everything is measured on the same data and machine, in one call: bytes on disk of the FP32
ONNX, ORT's static int8 quantization of it (QDQ, per-channel, calibrated on the training split: what
users deploy a CNN with; dynamic int8 too for a model without convolutions, where it is fast) and the
bnnc ONNX (and ``theoretical_bytes``, the data that file stores without its graph: :func:`bnnc.export.payload_bytes`, a lower bound of its size);
top-1 accuracy of the FP32 model, the binarized model in PyTorch and both ONNX models in ONNX
Runtime; ONNX Runtime latency; the per-layer plan and the fine-tuning history. Thresholds turn
the figures into pass/fail checks for a CI pipeline. :class:`Report` renders to a dict (the
JSON schema below), Markdown and a self-contained HTML page; it never prints.

JSON schema (``schema_version`` 3; 2 added ``openvino`` and the ``*_openvino`` latencies; 3 made ``int8`` ORT's
static quantization, added ``int8_dynamic*`` where measured, ``int8_fastest`` and the ``int8`` section;
``speedup_vs_int8`` is against the faster of the two)::

    {"schema": "bnnc-report", "schema_version": 3, "bnnc_version": str,
     "model": {"path", "sha256", "source_path", "source_sha256", "onnx_path"},
     "data": {"source": str, "samples": int},
     "machine": {"platform", "cpus", "threads", "torch", "onnxruntime"},
     "size": {"fp32_onnx_bytes", "int8_onnx_bytes", "bnnc_onnx_bytes", "theoretical_bytes",
              "compression_vs_fp32", "compression_vs_int8", ["int8_dynamic_onnx_bytes"]},
     "accuracy": {"fp32", "binarized_torch", "bnnc_onnx", "int8_onnx", "drop_pt", "int8_drop_pt",
                  "onnx_torch_agreement", ["int8_dynamic_onnx"]},
     "int8": {"baseline": str, "calibration_samples": int, "dynamic_measured": bool},
     "latency": {"threads": int, "by_batch": {"<batch>": {"fp32" | "int8" | "int8_dynamic" | "bnnc" |
                 "bnnc_openvino" | "fp32_openvino": {"median_ms", "q1_ms", "q3_ms", "runs"}, "speedup_vs_fp32",
                 "speedup_vs_int8", "int8_fastest": "static" | "dynamic",
                 "openvino_speedup_vs_fp32", "openvino_speedup_vs_int8",
                 "openvino_speedup_vs_fastest_alternative"}}},
     "openvino": null | {"version", "error"} | {"version", "bnnc_ir_bytes", "fp32_ir_bytes", "xnor_layers",
                 "notes", "accuracy": {"bnnc", "fp32_default_precision", "torch_agreement"}},
     "layers": [{"name", "kind", "precision", "params", "bits", "macs", "reason"}],
     "totals": {"params", "binary_params", "macs", "binary_mac_share", "binary_weight_mac_share"},
     "finetune": null | {"best_epoch", "best_val_accuracy", "seconds", "epochs": [{"epoch",
                 "val_accuracy", "train_loss", "seconds"}]},
     "checks": [{"name", "value", "limit", "op": "<=" | ">=", "passed"}],
     "passed": bool}
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import torch

from bnnc import __version__
from bnnc.data import DataSpec
from bnnc.errors import BnncError
from bnnc.export import ExportError, payload_bytes, to_fp32_onnx, to_onnx
from bnnc.export import openvino as ov_export
from bnnc.export.exporter import pixel_model
from bnnc.io import ModelFile, load_checkpoint
from bnnc.measure import (CALIBRATION_SAMPLES, INT8_STATIC, has_convolutions, int8_dynamic, int8_static, latencies,
                           onnx_accuracy, torch_accuracy)
from bnnc.planning import Plan, Precision
from bnnc.resolve import data_for_model, load_fp32_source, require_binarized
from bnnc.training import history_path_for

SCHEMA_VERSION = 3


class ReportError(BnncError):
    """The inputs of a report don't belong together (e.g. an ONNX file from another checkpoint)."""


@dataclass(frozen=True)
class Thresholds:
    """Limits a CI pipeline gates on; None means not checked.

    ``max_accuracy_drop`` in percentage points (FP32 - bnnc ONNX), ``min_compression`` as FP32
    ONNX bytes / bnnc ONNX bytes, ``min_speedup`` as FP32 / bnnc ORT latency at every measured
    batch size, ``max_parity_mismatch`` as the share of samples whose prediction differs between
    the bnnc ONNX model and the PyTorch binarized model.
    """

    max_accuracy_drop: float | None = None
    min_compression: float | None = None
    min_speedup: float | None = None
    max_parity_mismatch: float | None = None


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    limit: float
    op: str  # "<=" or ">="

    @property
    def passed(self) -> bool:
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "limit": self.limit, "op": self.op, "passed": self.passed}

    def describe(self) -> str:
        return f"{self.name} = {self.value:.4g} (must be {self.op} {self.limit:g})"


@dataclass
class Report:
    """The figures of one report, as plain data (see the module docstring for the schema)."""

    doc: dict[str, Any]
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {**self.doc, "checks": [c.to_dict() for c in self.checks], "passed": self.passed}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        return render_markdown(self.to_dict())

    def to_html(self) -> str:
        return render_html(self.to_dict())


def evaluate(doc: dict[str, Any], limits: Thresholds) -> list[Check]:
    """The checks ``limits`` asks for, on the measured figures."""
    checks = []
    if limits.max_accuracy_drop is not None:
        checks.append(Check("accuracy_drop_pt", doc["accuracy"]["drop_pt"], limits.max_accuracy_drop, "<="))
    if limits.min_compression is not None:
        checks.append(Check("compression_vs_fp32", doc["size"]["compression_vs_fp32"], limits.min_compression, ">="))
    if limits.min_speedup is not None:
        worst = min(b["speedup_vs_fp32"] for b in doc["latency"]["by_batch"].values())
        checks.append(Check("speedup_vs_fp32", worst, limits.min_speedup, ">="))
    if limits.max_parity_mismatch is not None:
        checks.append(Check("parity_mismatch", 1 - doc["accuracy"]["onnx_torch_agreement"],
                            limits.max_parity_mismatch, "<="))
    return checks


def _bnnc_onnx_input(proto: onnx.ModelProto) -> str:
    meta = {p.key: p.value for p in proto.metadata_props}
    return "uint8" if meta.get("bnnc.input", "").startswith("uint8") else "float"


def _check_onnx(path: Path, loaded: ModelFile, shape: tuple[int, ...]) -> onnx.ModelProto:
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
        fresh, _ = to_onnx(net, shape, integer=meta.get("bnnc.mode") != "float", uint8_input=uint8)
    except ExportError:
        fresh = None
    if fresh is None or fresh.graph.SerializeToString() != proto.graph.SerializeToString():
        raise ReportError(f"{path} is not what bnnc export makes of this checkpoint (its graph differs), though "
                          "its metadata says so", "re-export it with `bnnc export`, or drop --onnx")
    return proto


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
    limits: Thresholds | None = None,
    batches: tuple[int, ...] = (1, 64),
    threads: int | None = None,
    samples: int | None = None,
    rounds: int = 5,
    repeats: int = 20,
    openvino: bool | None = None,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    trust_model: bool = False,
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
    """
    progress = on_progress or (lambda stage: None)
    path = Path(model_path)
    progress(f"loading {path}")
    loaded = require_binarized(load_checkpoint(path, trust_model=trust_model, allow_arch=arch))
    plan = Plan.from_dict((loaded.binarized or {})["plan"])
    source = load_fp32_source(loaded, fp32_path, arch=arch, arch_kwargs=arch_kwargs, trust_model=trust_model)
    fp32 = source.model.eval()

    progress("loading the data")
    splits = data_for_model(data, loaded)
    x, y = splits.val.tensors
    if samples is not None:
        x, y = x[:samples], y[:samples]
    shape = splits.preprocessing.input_shape

    progress("exporting the ONNX models (FP32, ORT int8, bnnc)")
    if onnx_path is not None:
        bnnc_proto = _check_onnx(Path(onnx_path), loaded, shape)
        bnnc_blob = Path(onnx_path).read_bytes()
    else:
        bnnc_proto, _ = to_onnx(loaded.model, shape)
        bnnc_blob = bnnc_proto.SerializeToString()
    fp32_blob = to_fp32_onnx(fp32, shape).SerializeToString()
    pool = splits.train if len(splits.train) else splits.val  # the int8 baseline calibrates on training data
    calibration = pool.tensors[0][:CALIBRATION_SAMPLES].numpy()
    int8_blob = int8_static(fp32_blob, calibration)
    blobs = {"fp32": fp32_blob, "int8": int8_blob, "bnnc": bnnc_blob}
    if not has_convolutions(fp32_blob):  # dynamic int8 competes only without convolutions (ConvInteger is slow)
        blobs["int8_dynamic"] = int8_dynamic(fp32_blob)
    xs = x.numpy()
    bnnc_x = xs
    if _bnnc_onnx_input(bnnc_proto) == "uint8":
        bnnc_x = splits.preprocessing.pixels(x).numpy()
    inputs = {k: bnnc_x if k == "bnnc" else xs for k in blobs}

    progress(f"accuracy on {len(x):,} samples")
    acc_fp32, _ = torch_accuracy(fp32, x, y)
    acc_torch, pred_torch = torch_accuracy(loaded.model, x, y)
    acc_bnnc, pred_bnnc = onnx_accuracy(bnnc_blob, bnnc_x, y.numpy())
    acc_int8, _ = onnx_accuracy(int8_blob, xs, y.numpy())
    acc_dynamic = onnx_accuracy(blobs["int8_dynamic"], xs, y.numpy())[0] if "int8_dynamic" in blobs else None

    threads = threads or torch.get_num_threads()
    models: dict[str, Any] = dict(blobs)
    ov_doc: dict[str, Any] | None = None
    if openvino is not False and ov_export.available():
        progress("exporting the OpenVINO models (bnnc IR, FP32 IR)")
        try:
            ir, record, _ = ov_export.to_openvino(loaded.model, shape)
            fp32_ov = ov_export.fp32_ir(fp32_blob, shape)
        except ExportError as e:  # the ONNX Runtime rows still stand; say why these are missing
            ov_doc = {"version": ov_export.version(), "error": e.message}
        else:
            models["bnnc_openvino"] = ov_export.OpenVINOSession(ir, threads=threads)
            models["fp32_openvino"] = ov_export.OpenVINOSession(fp32_ov, threads=threads, precision=None)
            inputs.update(bnnc_openvino=xs, fp32_openvino=xs)
            acc_ov, pred_ov = onnx_accuracy(models["bnnc_openvino"], xs, y.numpy())
            acc_fp32_ov, _ = onnx_accuracy(models["fp32_openvino"], xs, y.numpy())
            ov_doc = {"version": ov_export.version(), "bnnc_ir_bytes": ir.size, "fp32_ir_bytes": fp32_ov.size,
                      "xnor_layers": len(record.xnor), "notes": record.notes,
                      "accuracy": {"bnnc": acc_ov, "fp32_default_precision": acc_fp32_ov,
                                   "torch_agreement": float((pred_ov == pred_torch).mean())}}
    elif openvino:
        raise BnncError("the OpenVINO rows need the openvino package", "pip install 'bnnc[openvino]'")
    by_batch: dict[str, Any] = {}
    for b in batches:
        progress(f"latency at batch {b} ({threads} threads)")
        feeds = {k: v[:b] for k, v in inputs.items()}
        lat = latencies(models, feeds, threads=threads, rounds=rounds, repeats=repeats)
        fastest_int8 = min(("int8", "int8_dynamic"), key=lambda k: lat[k].median_ms if k in lat else float("inf"))
        int8_ms = lat[fastest_int8].median_ms
        row = {**{k: v.to_dict() for k, v in lat.items()},
               "speedup_vs_fp32": lat["fp32"].median_ms / lat["bnnc"].median_ms,
               "speedup_vs_int8": int8_ms / lat["bnnc"].median_ms,
               "int8_fastest": "static" if fastest_int8 == "int8" else "dynamic"}
        if "bnnc_openvino" in lat:
            ov_ms = lat["bnnc_openvino"].median_ms
            fastest = min(lat[k].median_ms for k in ("fp32", fastest_int8, "fp32_openvino"))
            row.update(openvino_speedup_vs_fp32=lat["fp32"].median_ms / ov_ms,
                       openvino_speedup_vs_int8=int8_ms / ov_ms,
                       openvino_speedup_vs_fastest_alternative=fastest / ov_ms)
        by_batch[str(b)] = row

    layers = [{"name": layer.name, "kind": layer.kind, "precision": layer.precision.value, "params": layer.params,
               "bits": layer.precision.bits, "macs": layer.macs, "reason": layer.reason}
              for layer in plan.layers]
    macs = sum(layer.macs for layer in plan.layers) or 1
    doc: dict[str, Any] = {
        "schema": "bnnc-report", "schema_version": SCHEMA_VERSION, "bnnc_version": __version__,
        "model": {"path": str(path), "sha256": loaded.sha256, "source_path": str(source.path),
                  "source_sha256": source.sha256, "onnx_path": str(onnx_path) if onnx_path else None},
        "data": {"source": splits.source, "samples": len(x)},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": threads,
                    "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "size": {
            "fp32_onnx_bytes": len(fp32_blob), "int8_onnx_bytes": len(int8_blob), "bnnc_onnx_bytes": len(bnnc_blob),
            "theoretical_bytes": payload_bytes(bnnc_proto),
            "compression_vs_fp32": len(fp32_blob) / len(bnnc_blob), "compression_vs_int8": len(int8_blob) / len(bnnc_blob),
            **({"int8_dynamic_onnx_bytes": len(blobs["int8_dynamic"])} if "int8_dynamic" in blobs else {}),
        },
        "accuracy": {
            "fp32": acc_fp32, "binarized_torch": acc_torch, "bnnc_onnx": acc_bnnc, "int8_onnx": acc_int8,
            "drop_pt": (acc_fp32 - acc_bnnc) * 100, "int8_drop_pt": (acc_fp32 - acc_int8) * 100,
            "onnx_torch_agreement": float((pred_bnnc == pred_torch).mean()),
            **({"int8_dynamic_onnx": acc_dynamic} if acc_dynamic is not None else {}),
        },
        "int8": {"baseline": INT8_STATIC, "calibration_samples": len(calibration),
                 "dynamic_measured": "int8_dynamic" in blobs},
        "latency": {"threads": threads, "by_batch": by_batch},
        "layers": layers,
        "totals": {
            "params": sum(layer.params for layer in plan.layers),
            "binary_params": sum(layer.params for layer in plan.layers if layer.precision.binary_weights),
            "macs": macs,
            "binary_mac_share": sum(la.macs for la in plan.layers if la.precision is Precision.BINARY) / macs,
            "binary_weight_mac_share": sum(la.macs for la in plan.layers if la.precision.binary_weights) / macs,
        },
        "openvino": ov_doc,
        "finetune": _history(path),
    }
    return Report(doc, evaluate(doc, limits or Thresholds()))


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


# ----------------------------------------------------------------------------- rendering


def _pct(v: float) -> str:
    return f"{v:.2%}"


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


INT8_HEADER = "ORT int8 (static QDQ, calibrated)"


def summary_rows(d: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, FP32, ORT int8, bnnc) rows shared by the terminal, Markdown and HTML renderings. The int8 column is
    ORT's static quantization; a model without convolutions shows dynamic int8 beside it."""
    s, a = d["size"], d["accuracy"]
    rows = [
        ("ONNX size", _kib(s["fp32_onnx_bytes"]),
         _kib(s["int8_onnx_bytes"]) + _dynamic(_kib(s.get("int8_dynamic_onnx_bytes", 0)), s),
         f"{_kib(s['bnnc_onnx_bytes'])} ({s['compression_vs_fp32']:.1f}x smaller than FP32, "
         f"{s['compression_vs_int8']:.1f}x than int8; {_kib(s['theoretical_bytes'])} of it weights and thresholds)"),
        ("Accuracy (ONNX Runtime)", _pct(a["fp32"]),
         f"{_pct(a['int8_onnx'])} ({-a['int8_drop_pt']:+.2f} pt)" + _dynamic(_pct(a.get("int8_dynamic_onnx", 0)), s),
         f"{_pct(a['bnnc_onnx'])} ({-a['drop_pt']:+.2f} pt; PyTorch {_pct(a['binarized_torch'])}, "
         f"same prediction on {_pct(a['onnx_torch_agreement'])})"),
    ]
    for b, lat in d["latency"]["by_batch"].items():
        rows.append((f"Latency, batch {b} ({d['latency']['threads']} threads)", f"{lat['fp32']['median_ms']:.3f} ms",
                     f"{lat['int8']['median_ms']:.3f} ms"
                     + (f"; dynamic {lat['int8_dynamic']['median_ms']:.3f} ms" if "int8_dynamic" in lat else ""),
                     f"{lat['bnnc']['median_ms']:.3f} ms ({lat['speedup_vs_fp32']:.2f}x vs FP32, "
                     f"{lat['speedup_vs_int8']:.2f}x vs int8 {lat['int8_fastest']})"))
    return rows


def _dynamic(value: str, size: dict[str, Any]) -> str:
    return f"; dynamic {value}" if "int8_dynamic_onnx_bytes" in size else ""


OPENVINO_HEADER = ("", "bnnc in OpenVINO (XNOR-popcount, f32)", "FP32 in OpenVINO (CPU default precision)")


def openvino_rows(d: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, bnnc IR, FP32 IR) rows: empty when OpenVINO wasn't measured."""
    ov = d.get("openvino")
    if not ov:
        return []
    if "error" in ov:
        return [("not measured", ov["error"], "")]
    a = ov["accuracy"]
    rows = [("IR size (.xml + .bin)", f"{_kib(ov['bnnc_ir_bytes'])} ({ov['xnor_layers']} XNOR-popcount layers)",
             _kib(ov["fp32_ir_bytes"])),
            ("Accuracy (OpenVINO)", f"{_pct(a['bnnc'])} (same prediction as PyTorch on {_pct(a['torch_agreement'])})",
             _pct(a["fp32_default_precision"]))]
    for b, lat in d["latency"]["by_batch"].items():
        rows.append((f"Latency, batch {b} ({d['latency']['threads']} threads)",
                     f"{lat['bnnc_openvino']['median_ms']:.3f} ms ({lat['openvino_speedup_vs_fp32']:.2f}x vs ORT "
                     f"FP32, {lat['openvino_speedup_vs_int8']:.2f}x vs ORT int8, "
                     f"{lat['openvino_speedup_vs_fastest_alternative']:.2f}x vs the fastest alternative)",
                     f"{lat['fp32_openvino']['median_ms']:.3f} ms"))
    return rows


def render_markdown(d: dict[str, Any]) -> str:
    verdict = "all checks passed" if d["passed"] else "**checks FAILED**"
    lines = [f"# bnnc report: {Path(d['model']['path']).name}", "",
             f"Data: {d['data']['source']} ({d['data']['samples']:,} samples). bnnc {d['bnnc_version']}, "
             f"{d['machine']['cpus']} CPUs, ONNX Runtime {d['machine']['onnxruntime']}. {verdict if d['checks'] else ''}",
             "", f"| | FP32 | {INT8_HEADER} | bnnc |", "|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in summary_rows(d)]
    if openvino_rows(d):
        lines += ["", f"## OpenVINO {d['openvino']['version']}", "", "| " + " | ".join(OPENVINO_HEADER) + " |",
                  "|---|---|---|"]
        lines += [f"| {r[0]} | {r[1]} | {r[2]} |" for r in openvino_rows(d)]
    if d["checks"]:
        lines += ["", "## Checks", "", "| check | value | limit | result |", "|---|---|---|---|"]
        for c in d["checks"]:
            mark = "✅ pass" if c["passed"] else "❌ FAIL"
            lines.append(f"| {c['name']} | {c['value']:.4g} | {c['op']} {c['limit']:g} | {mark} |")
    lines += ["", "## Layers", "", "| layer | type | precision | params | bits | MACs |", "|---|---|---|---:|---:|---:|"]
    for la in d["layers"]:
        lines.append(f"| {la['name']} | {la['kind']} | {la['precision']} | {la['params']:,} | {la['bits']} | {la['macs']:,} |")
    t = d["totals"]
    lines += ["", f"{t['binary_params']:,} of {t['params']:,} weights binary; {t['binary_mac_share']:.1%} of "
              f"multiply-accumulates XNOR-popcount, {t['binary_weight_mac_share']:.1%} with binary weights."]
    ft = d["finetune"]
    if ft:
        lines += ["", "## Fine-tuning", "", f"{len(ft['epochs'])} epochs in {ft['seconds']:.0f} s; best validation "
                  f"accuracy {_pct(ft['best_val_accuracy'])} at epoch {ft['best_epoch']}.", "",
                  "| epoch | val accuracy | train loss | seconds |", "|---:|---:|---:|---:|"]
        lines += [f"| {e['epoch']} | {_pct(e['val_accuracy'])} | {e['train_loss']:.4f} | {e['seconds']:.1f} |"
                  for e in ft["epochs"]]
    return "\n".join(lines) + "\n"


def _figure_png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(d: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs made with matplotlib: sizes, latencies, accuracy per epoch (when fine-tuned)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    names = ["FP32", "ORT int8", "bnnc"]
    colors = ["#999999", "#5b8bd0", "#2ca25f"]
    s = d["size"]
    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.barh(names, [s["fp32_onnx_bytes"] / 1024, s["int8_onnx_bytes"] / 1024, s["bnnc_onnx_bytes"] / 1024], color=colors)
    ax.set_xlabel("ONNX file size (KiB)")
    ax.invert_yaxis()
    out["size"] = _figure_png(fig)
    plt.close(fig)
    batches = list(d["latency"]["by_batch"])
    fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 2.6), squeeze=False)
    for ax, b in zip(axes[0], batches, strict=True):
        lat = d["latency"]["by_batch"][b]
        ax.barh(names, [lat[k]["median_ms"] for k in ("fp32", "int8", "bnnc")], color=colors,
                xerr=[[lat[k]["median_ms"] - lat[k]["q1_ms"] for k in ("fp32", "int8", "bnnc")],
                      [lat[k]["q3_ms"] - lat[k]["median_ms"] for k in ("fp32", "int8", "bnnc")]])
        ax.set_xlabel(f"ms per call, batch {b} (median, IQR)")
        ax.invert_yaxis()
    fig.subplots_adjust(wspace=0.45)
    out["latency"] = _figure_png(fig)
    plt.close(fig)
    ft = d["finetune"]
    if ft and ft["epochs"]:
        fig, ax = plt.subplots(figsize=(5, 2.8))
        ax.plot([e["epoch"] for e in ft["epochs"]], [e["val_accuracy"] * 100 for e in ft["epochs"]], "o-",
                color=colors[2], label="binarized (validation)")
        ax.axhline(d["accuracy"]["fp32"] * 100, color=colors[0], linestyle="--", label="FP32")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.legend(loc="lower right")
        out["accuracy"] = _figure_png(fig)
        plt.close(fig)
    return out


def render_html(d: dict[str, Any]) -> str:
    """One self-contained page: the Markdown's tables as HTML, and the plots inlined as PNG."""
    e = html.escape

    def table(header: list[str], rows: list[list[str]], row_class: list[str] | None = None) -> str:
        head = "".join(f"<th>{e(h)}</th>" for h in header)
        body = "".join(
            f"<tr class='{(row_class or [''] * len(rows))[i]}'>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>"
            for i, r in enumerate(rows))
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    parts = [f"<h1>bnnc report: {e(Path(d['model']['path']).name)}</h1>",
             f"<p>Data: {e(d['data']['source'])} ({d['data']['samples']:,} samples). bnnc {e(d['bnnc_version'])}, "
             f"{d['machine']['cpus']} CPUs, ONNX Runtime {e(d['machine']['onnxruntime'])}.</p>",
             table(["", "FP32", INT8_HEADER, "bnnc"], [list(r) for r in summary_rows(d)])]
    if openvino_rows(d):
        parts += [f"<h2>OpenVINO {e(d['openvino']['version'])}</h2>",
                  table(list(OPENVINO_HEADER), [list(r) for r in openvino_rows(d)])]
    if d["checks"]:
        rows = [[c["name"], f"{c['value']:.4g}", f"{c['op']} {c['limit']:g}", "pass" if c["passed"] else "FAIL"]
                for c in d["checks"]]
        parts += ["<h2>Checks</h2>", table(["check", "value", "limit", "result"], rows,
                                           ["pass" if c["passed"] else "fail" for c in d["checks"]])]
    figs = plots(d)
    parts += ["<h2>Size and speed</h2>"] + [f"<img alt='{k}' src='data:image/png;base64,{v}'>" for k, v in figs.items()]
    parts += ["<h2>Layers</h2>", table(["layer", "type", "precision", "params", "bits", "MACs"],
                                       [[la["name"], la["kind"], la["precision"], f"{la['params']:,}", str(la["bits"]),
                                         f"{la['macs']:,}"] for la in d["layers"]])]
    style = ("body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
             "tr.fail td{background:#fdd}tr.pass td{background:#efe}img{display:block;margin:1em 0}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>bnnc report</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}</body></html>\n")
