"""The baselines bnnc is measured against: ORT's static int8 is the one users deploy CNNs with."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from conftest import build, images
from onnx import numpy_helper

from bnnc.export import to_fp32_onnx
from bnnc.measure import has_convolutions, int8_static, needs_reduce_range


def _optimized_ops(blob: bytes, tmp_path) -> list[str]:
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    opts.log_severity_level = 3
    ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]


def test_static_int8_is_qdq_per_channel_with_batchnorm_folded_and_runs_qlinearconv(tmp_path):
    fp32 = to_fp32_onnx(build("cnn"), (1, 28, 28)).SerializeToString()
    assert has_convolutions(fp32)
    blob = int8_static(fp32, images(64).numpy())
    graph = onnx.load_from_string(blob).graph
    ops = [n.op_type for n in graph.node]
    assert "BatchNormalization" not in ops and "QuantizeLinear" in ops
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    producers = {o: n for n in graph.node for o in n.output}
    for conv in convs:  # weights: int8, dequantized with one scale per output channel
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear" and inits[dq.input[0]].dtype == np.int8
        assert inits[dq.input[1]].shape == (inits[dq.input[0]].shape[0],)
    assert "QLinearConv" in _optimized_ops(blob, tmp_path) and "ConvInteger" not in _optimized_ops(blob, tmp_path)


def test_static_int8_weights_keep_to_7_bits_where_the_cpu_has_no_vnni(monkeypatch):
    """Without VNNI, ORT's uint8 x int8 kernels sum product pairs in saturating 16 bits: the baseline's weights
    then use ORT's reduce_range (|q| <= 64), as users on such CPUs are told to; with VNNI the full int8 range."""
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert needs_reduce_range({"avx2", "fma"}) and needs_reduce_range({"avx512f", "avx512bw"})
    assert not needs_reduce_range({"avx2", "avx_vnni"}) and not needs_reduce_range({"avx512f", "avx512_vnni"})
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert not needs_reduce_range(set())
    fp32 = to_fp32_onnx(build("cnn"), (1, 28, 28)).SerializeToString()
    for reduce in (True, False):
        monkeypatch.setattr("bnnc.measure.needs_reduce_range", lambda reduce=reduce: reduce)
        graph = onnx.load_from_string(int8_static(fp32, images(64).numpy())).graph
        weights = [numpy_helper.to_array(i) for i in graph.initializer if numpy_helper.to_array(i).dtype == np.int8]
        largest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
        assert (largest <= 64) if reduce else (largest == 127), largest


def test_static_int8_activation_ranges_come_from_the_calibration_data():
    fp32 = to_fp32_onnx(build("cnn"), (1, 28, 28)).SerializeToString()

    def input_scale(x: np.ndarray) -> float:
        graph = onnx.load_from_string(int8_static(fp32, x)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        q = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == graph.input[0].name)
        return float(inits[q.input[1]])

    x = images(64).numpy()
    assert abs(input_scale(x * 10) / input_scale(x) - 10) < 1e-3


def test_dynamic_int8_competes_only_without_convolutions():
    assert not has_convolutions(to_fp32_onnx(build("mlp"), (1, 28, 28)).SerializeToString())


def test_quantizing_leaves_the_callers_logging_as_it_was():
    """ORT's quantizer is silenced while it runs, not by changing the application's root logger for good."""
    import logging

    from bnnc.measure import int8_dynamic

    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.INFO)
    try:
        fp32 = to_fp32_onnx(build("mlp"), (1, 28, 28)).SerializeToString()
        int8_static(fp32, images(32).numpy())
        int8_dynamic(fp32)
        assert root.level == logging.INFO
    finally:
        root.setLevel(before)
