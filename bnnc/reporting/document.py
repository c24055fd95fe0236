"""A report's figures as one document: :class:`Report`, and the JSON schema it follows.

Everything is measured on the same data and machine, in one call (:mod:`bnnc.reporting.collect`): bytes
on disk of the FP32 ONNX, ORT's static int8 quantization of it (QDQ, per-channel, calibrated on the
training split: what users deploy a CNN with; dynamic int8 too for a model without convolutions, where it
is fast) and the bnnc ONNX (and ``theoretical_bytes``, the data that file stores without its graph:
:func:`bnnc.export.payload_bytes`, a lower bound of its size); top-1 accuracy of the FP32 model, the
binarized model in PyTorch and both ONNX models in ONNX Runtime; ONNX Runtime latency; the per-layer plan
and the fine-tuning history. Limits (:mod:`bnnc.reporting.limits`) turn the figures into pass/fail checks
for a CI pipeline. :class:`Report` renders to a dict (the JSON schema below), Markdown and a
self-contained HTML page; it never prints.

JSON schema (``schema_version`` 5; 5 added each layer's ``fp32_bytes`` (its own parameters in float32) and
``bytes`` (what the bnnc ONNX stores for it, null where not known) and ``drop_alone_pt`` (its accuracy drop
binarized alone, where ``convert --sensitivity`` measured it, else null); 4 added ``c``; 2 added ``openvino`` and the
``*_openvino`` latencies; 3 made ``int8`` ORT's static quantization, added ``int8_dynamic*`` where measured,
``int8_fastest`` and the ``int8`` section; ``speedup_vs_int8`` is against the faster of the two)::

    {"schema": "bnnc-report", "schema_version": 5, "bnnc_version": str,
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
     "c": null | {"compiler", "error"} | {"compiler", "flags", "weight_bytes", "ram_bytes", "object": {"compiler",
                 "flags", "text", "data", "bss", "flash", "ram"} | null, "cortex_m4": same | null,
                 "accuracy", "torch_agreement", "latency_batch1_ms", "speedup_vs_fp32", "speedup_vs_int8",
                 ["speedup_vs_openvino"]},
     "layers": [{"name", "kind", "precision", "params", "bits", "macs", "reason", "fp32_bytes", "bytes",
                 "drop_alone_pt"}],
     "totals": {"params", "binary_params", "macs", "binary_mac_share", "binary_weight_mac_share"},
     "finetune": null | {"best_epoch", "best_val_accuracy", "seconds", "epochs": [{"epoch",
                 "val_accuracy", "train_loss", "seconds"}]},
     "checks": [{"name", "value", "limit", "op": "<=" | ">=", "passed"}],
     "passed": bool}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bnnc.errors import BnncError
from bnnc.reporting.limits import Check
from bnnc.reporting.render import render_html, render_markdown

SCHEMA_VERSION = 5


class ReportError(BnncError):
    """The inputs of a report don't belong together (e.g. an ONNX file from another checkpoint)."""


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
