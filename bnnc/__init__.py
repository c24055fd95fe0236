"""bnnc: turn a trained FP32 PyTorch model into a binarized neural network.

The pipeline, one module a step: load (:mod:`bnnc.loading`, the format: :mod:`bnnc.checkpoint`; data:
:mod:`bnnc.data`) -> plan (:mod:`bnnc.planning`) -> binarize (:mod:`bnnc.swap`, :mod:`bnnc.layers`,
:mod:`bnnc.quantizers`; 8-bit kept layers: :mod:`bnnc.int8`) -> calibrate (:mod:`bnnc.calibrate`) ->
finetune (:mod:`bnnc.training`) -> export (:mod:`bnnc.export`) -> report (:mod:`bnnc.reporting`); the
steps on files: :mod:`bnnc.conversion`, :mod:`bnnc.pipeline` (all four). The README's module map has
every module.

Names are imported lazily so that ``bnnc --help`` doesn't pay for importing torch.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from bnnc.version import __version__

_EXPORTS = {
    "BnncError": "bnnc.errors",
    "load_model": "bnnc.loading",
    "load_checkpoint": "bnnc.loading",
    "save_checkpoint": "bnnc.checkpoint",
    "ModelFile": "bnnc.loading",
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
    "export_c": "bnnc.export",
    "ExportResult": "bnnc.export",
    "report": "bnnc.reporting",
    "Report": "bnnc.reporting",
    "Limits": "bnnc.reporting",
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
    from bnnc.checkpoint import save_checkpoint
    from bnnc.conversion import ConvertOptions, convert, convert_file
    from bnnc.data import DataSplits, Preprocessing, load_data, sample_data_path
    from bnnc.errors import BnncError
    from bnnc.export import ExportResult, export_c, export_onnx, export_openvino
    from bnnc.int8 import Int8Conv1d, Int8Conv2d, Int8Linear
    from bnnc.layers import BinaryConv1d, BinaryConv2d, BinaryLinear, InputBinarizer, clip_latent_weights
    from bnnc.loading import ModelFile, load_checkpoint, load_model
    from bnnc.pipeline import compress
    from bnnc.planning import Plan, PlanRules, Precision, plan
    from bnnc.quantizers import binarize, stochastic_binarize
    from bnnc.reporting import Limits, Report, report
    from bnnc.shift import ShiftAdaMax, ShiftBatchNorm
    from bnnc.summary import summarize
    from bnnc.training import FinetuneConfig, FinetuneResult, finetune


_DEPRECATED = {"Thresholds": "Limits"}  # old name -> new name; the old names go in the next release


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        warnings.warn(f"bnnc.{name} is now bnnc.{_DEPRECATED[name]}; the old name goes in the next release",
                      DeprecationWarning, stacklevel=2)
        return __getattr__(_DEPRECATED[name])
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bnnc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
