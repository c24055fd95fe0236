"""``bnnc report``: size, accuracy and speed of a binarized model against FP32 and ORT int8, measured
(:mod:`~bnnc.reporting.collect`), gated for CI (:mod:`~bnnc.reporting.limits`), as one document
(:mod:`~bnnc.reporting.document`, with the JSON schema) rendered for people (:mod:`~bnnc.reporting.render`)."""

from __future__ import annotations

import warnings
from typing import Any

from bnnc.reporting.collect import report
from bnnc.reporting.document import SCHEMA_VERSION, Report, ReportError
from bnnc.reporting.limits import Check, Limits, check_limits
from bnnc.reporting.render import (
    C_HEADER,
    INT8_HEADER,
    LAYER_HEADER,
    LAYER_TEXT_COLUMNS,
    OPENVINO_HEADER,
    c_rows,
    layer_rows,
    openvino_rows,
    plots,
    render_html,
    render_markdown,
    summary_rows,
)

__all__ = ["C_HEADER", "INT8_HEADER", "LAYER_HEADER", "LAYER_TEXT_COLUMNS", "OPENVINO_HEADER", "SCHEMA_VERSION",
           "Check", "Limits", "Report", "ReportError", "c_rows", "check_limits", "layer_rows", "openvino_rows", "plots",
           "render_html", "render_markdown", "report", "summary_rows"]


def __getattr__(name: str) -> Any:
    if name == "Thresholds":  # renamed: "thresholds" are a binary layer's (beta, and the export's FoldedThresholds)
        warnings.warn("bnnc.reporting.Thresholds is now Limits; the old name goes in the next release",
                      DeprecationWarning, stacklevel=2)
        return Limits
    raise AttributeError(f"module 'bnnc.reporting' has no attribute {name!r}")
