"""Running an OpenVINO IR: the optional ``openvino`` package, the IR in memory, and a session with the
small part of ONNX Runtime's interface bnnc times and runs (the report, the benchmarks, the parity check)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bnnc.errors import ExportError, first_line

PRECISION = {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0}
"""The compile settings the IR is checked with, and must be run with for the same predictions. The CPU's
default precision is bf16 where it has AMX/AVX512-BF16, and the plugin may quantize the activations
of a layer with compressed weights to int8: the FP32 layers would round differently and a binarizer
after them could flip."""


def openvino_module() -> Any:
    """The ``openvino`` package, or an ExportError saying how to install it."""
    try:
        import openvino
    except ImportError as e:  # the export's only optional dependency
        raise ExportError("--format openvino needs the openvino package",
                          "pip install 'bnnc[openvino]' (or pip install openvino)") from e
    return openvino


@dataclass
class IR:
    """A serialized OpenVINO model: the ``.xml`` graph and the ``.bin`` weights it points into."""

    xml: bytes
    bin: bytes

    @property
    def size(self) -> int:
        return len(self.xml) + len(self.bin)

    def read(self, core: Any) -> Any:
        return core.read_model(self.xml, openvino_module().Tensor(np.frombuffer(self.bin, dtype=np.uint8)))


class OpenVINOSession:
    """An OpenVINO CPU model with the small part of ONNX Runtime's session interface bnnc times and runs.

    The IR has a static batch (BinaryConvolution needs static shapes): it is reshaped and compiled
    once per batch size. ``precision`` None keeps the CPU's default (bf16 where the CPU has it).
    """

    @dataclass
    class _Input:
        name: str

    def __init__(self, ir: IR, *, threads: int | None = None, precision: str | None = "f32") -> None:
        ov = self._ov = openvino_module()
        self._core = ov.Core()
        self._ir = ir
        self._config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if precision:
            self._config.update(PRECISION, INFERENCE_PRECISION_HINT=precision)
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
        self._compiled: dict[tuple[int, ...], Any] = {}
        model = ir.read(self._core)
        self._name = model.get_parameters()[0].get_friendly_name()

    def get_inputs(self) -> list[OpenVINOSession._Input]:
        return [self._Input(self._name)]

    def _request(self, shape: tuple[int, ...]) -> Any:
        if shape not in self._compiled:
            model = self._ir.read(self._core)
            model.reshape(list(shape))
            self._compiled[shape] = self._core.compile_model(model, "CPU", self._config).create_infer_request()
        return self._compiled[shape]

    def run(self, _names: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        (x,) = feed.values()
        x = np.ascontiguousarray(x)
        request = self._request(tuple(x.shape))
        # the input shared, not copied, and no result dict built: the Python call costs ~17 us this way,
        # ~60 us through infer([x]) (ORT's session.run: ~5 us)
        request.set_input_tensor(self._ov.Tensor(x, shared_memory=True))
        request.infer()
        return [request.get_output_tensor(0).data.copy()]


def version() -> str:
    """The installed openvino's version."""
    return str(openvino_module().__version__)


def available() -> bool:
    """Whether the openvino package can be imported (the OpenVINO export and report rows need it)."""
    try:
        openvino_module()
    except Exception:  # noqa: BLE001 - ExportError, or a broken install
        return False
    return True


def fp32_ir(fp32_onnx: bytes, input_shape: tuple[int, ...]) -> IR:
    """The FP32 model as a user would run it in OpenVINO: its ONNX export converted by OpenVINO itself."""
    ov = openvino_module()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, xml_path = Path(tmp) / "fp32.onnx", Path(tmp) / "fp32.xml"
        onnx_path.write_bytes(fp32_onnx)
        try:
            converted = ov.convert_model(onnx_path, input=[[1, *input_shape]])
        except Exception as e:  # noqa: BLE001 - the converter's messages are pages long
            raise ExportError(f"OpenVINO could not convert the FP32 model: {first_line(e, 200, with_type=False)}"
                              ) from e
        ov.save_model(converted, xml_path, compress_to_fp16=False)
        return IR(xml_path.read_bytes(), xml_path.with_suffix(".bin").read_bytes())
