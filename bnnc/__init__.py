"""bnnc: turn a trained FP32 PyTorch model into a binarized neural network.

The pipeline, one module a step: load (:mod:`bnnc.io`, data: :mod:`bnnc.data`) -> plan (:mod:`bnnc.planning`) ->
binarize (:mod:`bnnc.conversion`, :mod:`bnnc.layers`, :mod:`bnnc.quantizers`; 8-bit kept layers: :mod:`bnnc.int8`)
-> calibrate (:mod:`bnnc.calibrate`) -> finetune (:mod:`bnnc.training`) -> export (:mod:`bnnc.export`);
summarize (:mod:`bnnc.summary`).

Names are imported lazily so that ``bnnc --help`` doesn't pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "BnncError": "bnnc.errors",
    "load_model": "bnnc.io",
    "load_checkpoint": "bnnc.io",
    "save_checkpoint": "bnnc.io",
    "ModelFile": "bnnc.io",
    "load_data": "bnnc.data",
    "Preprocessing": "bnnc.data",
    "DataSplits": "bnnc.data",
    "sample_data_path": "bnnc.data",
    "plan": "bnnc.planning",
    "Plan": "bnnc.planning",
    "PlanRules": "bnnc.planning",
    "Precision": "bnnc.planning",
    "convert": "bnnc.conversion",
    "convert_file": "bnnc.conversion",
    "ConvertOptions": "bnnc.conversion",
    "calibrate_thresholds": "bnnc.calibrate",
    "finetune": "bnnc.training",
    "FinetuneConfig": "bnnc.training",
    "FinetuneResult": "bnnc.training",
    "export_onnx": "bnnc.export",
    "export_openvino": "bnnc.export",
    "ExportResult": "bnnc.export",
    "report": "bnnc.reporting",
    "Report": "bnnc.reporting",
    "Thresholds": "bnnc.reporting",
    "compress": "bnnc.pipeline",
    "ShiftBatchNorm": "bnnc.shift",
    "ShiftAdaMax": "bnnc.shift",
    "summarize": "bnnc.summary",
    "binarize": "bnnc.quantizers",
    "stochastic_binarize": "bnnc.quantizers",
    "BinaryLinear": "bnnc.layers",
    "BinaryConv1d": "bnnc.layers",
    "BinaryConv2d": "bnnc.layers",
    "InputBinarizer": "bnnc.layers",
    "clip_latent_weights": "bnnc.layers",
    "Int8Linear": "bnnc.int8",
    "Int8Conv1d": "bnnc.int8",
    "Int8Conv2d": "bnnc.int8",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from bnnc.calibrate import calibrate_thresholds
    from bnnc.conversion import ConvertOptions, convert, convert_file
    from bnnc.data import DataSplits, Preprocessing, load_data, sample_data_path
    from bnnc.errors import BnncError
    from bnnc.export import ExportResult, export_onnx, export_openvino
    from bnnc.pipeline import compress
    from bnnc.reporting import Report, Thresholds, report
    from bnnc.training import FinetuneConfig, FinetuneResult, finetune
    from bnnc.shift import ShiftAdaMax, ShiftBatchNorm
    from bnnc.io import ModelFile, load_checkpoint, load_model, save_checkpoint
    from bnnc.int8 import Int8Conv1d, Int8Conv2d, Int8Linear
    from bnnc.layers import BinaryConv1d, BinaryConv2d, BinaryLinear, InputBinarizer, clip_latent_weights
    from bnnc.planning import Plan, PlanRules, Precision, plan
    from bnnc.quantizers import binarize, stochastic_binarize
    from bnnc.summary import summarize


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bnnc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
