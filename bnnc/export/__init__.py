"""Export: a binarized model -> mixed-precision ONNX with 1-bit weights and an integer path.

lower (:mod:`~bnnc.export.lowering`, thresholds: :mod:`~bnnc.export.thresholds`) -> torch.onnx
-> replace placeholders (:mod:`~bnnc.export.graph`, bits: :mod:`~bnnc.export.packing`; torch's BatchNorm rounding:
:mod:`~bnnc.export.batchnorm`, int8 requantization: :mod:`~bnnc.export.requantize`), or convert
them with OpenVINO into XNOR-popcount layers (:mod:`~bnnc.export.openvino`), or write C
(:mod:`~bnnc.export.csource`, kernels in ``c_runtime.h``, compiled by :mod:`~bnnc.export.ctoolchain`) -> check
(:mod:`~bnnc.export.parity`, runtimes: :mod:`~bnnc.export.runtime`).
"""

from bnnc.export.c_export import export_c
from bnnc.export.exporter import (
    ExportError,
    ExportResult,
    export_onnx,
    layer_payload,
    payload_bytes,
    predicted_payload,
    to_fp32_onnx,
    to_onnx,
)
from bnnc.export.openvino import export_openvino
from bnnc.export.parity import Parity, check_parity

__all__ = ["ExportError", "ExportResult", "Parity", "check_parity", "export_c", "export_onnx", "export_openvino",
           "layer_payload", "payload_bytes", "predicted_payload", "to_fp32_onnx", "to_onnx"]
