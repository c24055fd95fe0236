"""Choices shared by the commands (typer shows them in --help and refuses anything else)."""

from __future__ import annotations

from enum import Enum

from bnnc import defaults


class PrecisionChoice(str, Enum):
    fp32 = "fp32"
    weights = "weights"
    binary = "binary"
    int8 = "int8"


class BinarizeChoice(str, Enum):
    deterministic = "deterministic"
    stochastic = "stochastic"


class OptimizerChoice(str, Enum):
    adam = "adam"
    adamax = "adamax"
    shift_adamax = "shift-adamax"


class ScheduleChoice(str, Enum):
    cosine = "cosine"
    linear = "linear"
    step = "step"
    constant = "constant"


class SteChoice(str, Enum):
    hardtanh = "hardtanh"
    approxsign = "approxsign"
    ede = "ede"


DEFAULT_STE = SteChoice(defaults.STE)


class BatchNormChoice(str, Enum):
    standard = "standard"
    shift = "shift"


class FormatChoice(str, Enum):
    onnx = "onnx"
    openvino = "openvino"
    c = "c"
