"""The int8 precision: the quantizers, the 8-bit layers, the plan, calibration, export (exact) and fine-tuning."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from conftest import build, images
from onnx import helper, numpy_helper
from torch import nn

from bnnc.calibrate import calibrate_thresholds
from bnnc.conversion import convert
from bnnc.errors import BnncError
from bnnc.export import export_onnx, to_onnx
from bnnc.int8 import Int8Conv2d, Int8Linear, int8_layers
from bnnc.planning import PlanRules, Precision, plan
from bnnc.quantizers import fake_quantize_uint8, int8_weights, quantize_uint8
from bnnc.summary import summarize

INT8_ENDS = PlanRules(first=Precision.INT8, last=Precision.INT8, min_params=0, min_fan_in=0)


def int8_net(kind: str, rules: PlanRules = INT8_ENDS) -> nn.Module:
    model = build(kind)
    net = convert(model, plan(model, rules, input_shape=(1, 28, 28)))
    calibrate_thresholds(net, [images(128)], batchnorm=True)
    return net.eval()


# ----------------------------------------------------------------------------- the math


def test_quantize_uint8_rounds_every_tie_as_onnxruntime_quantizelinear():
    """Division, round half to even: multiplying by 1/scale instead rounds a tenth of the ties differently."""
    import onnxruntime as ort

    scale, zero = np.float32(0.0123), np.uint8(100)
    k = np.arange(-150, 150, dtype=np.float32)
    x = np.concatenate([(k + np.float32(0.5)) * scale, np.random.default_rng(0).normal(0, 2, 5000).astype(np.float32)])
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])], "q",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.UINT8, [None])],
        [numpy_helper.from_array(np.array(scale), "s"), numpy_helper.from_array(np.array(zero), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    ours = quantize_uint8(torch.from_numpy(x), torch.tensor(scale), torch.tensor(float(zero)))
    assert np.array_equal(ours.numpy().astype(np.uint8), y)


def test_fake_quantize_passes_the_gradient_inside_the_range_and_cancels_it_outside():
    x = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 3.0], requires_grad=True)
    scale, zero = torch.tensor(2 / 255), torch.tensor(128.0)  # range about [-1, 1]
    y = fake_quantize_uint8(x, scale, zero)
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert torch.allclose(y[1:5], x[1:5].detach(), atol=scale.item())  # within one step inside the range
    assert y[0] == (0 - zero) * scale and y[-1] == (255 - zero) * scale  # saturated at the ends of uint8


def test_int8_weights_are_per_channel_symmetric_with_a_straight_through_gradient():
    w = torch.tensor([[0.5, -1.0, 0.25], [0.01, 0.021, -0.04]], requires_grad=True)
    q, scale = int8_weights(w)
    assert torch.allclose(scale, torch.tensor([1.0, 0.04]) / 63)  # 7 bits of range: ORT's AVX2 kernels stay exact
    assert q.abs().max() == 63 and torch.equal(q, q.round()) and q[1].tolist() == [16.0, 33.0, -63.0]
    (q * torch.arange(6.0).view(2, 3)).sum().backward()
    assert torch.allclose(w.grad, torch.arange(6.0).view(2, 3) / scale.view(-1, 1))


# ----------------------------------------------------------------------------- the layers


def test_an_int8_layer_computes_the_integer_formula_exactly_in_eval_and_fake_quantized_in_training():
    torch.manual_seed(0)
    fp32 = nn.Conv2d(3, 4, 3, padding=1)
    layer = Int8Conv2d.from_float(fp32)
    layer.set_input_range(-1.5, 2.0)
    x = torch.randn(2, 3, 6, 6)
    w_q, s_w = layer.quantized_weight()
    xq = quantize_uint8(x, layer.input_scale, layer.input_zero_point) - layer.input_zero_point
    acc = torch.nn.functional.conv2d(xq.double(), w_q.double(), padding=1)
    expected = acc.float() * (layer.input_scale * s_w).float().view(1, -1, 1, 1) + fp32.bias.view(1, -1, 1, 1)
    layer.eval()
    assert torch.equal(layer(x), expected)
    layer.train()
    assert torch.allclose(layer(x), expected, atol=1e-4)
    assert int(layer.input_zero_point) == round(1.5 / float(layer.input_scale))  # 0 is exactly representable


def test_an_uncalibrated_int8_layer_refuses_to_evaluate():
    layer = Int8Linear.from_float(nn.Linear(4, 2)).eval()
    with pytest.raises(BnncError, match="no calibrated input range"):
        layer(torch.randn(3, 4))


def test_calibration_sets_each_int8_layer_to_the_range_of_its_inputs():
    net = int8_net("mlp")
    first = dict(int8_layers(net))["features.1"]
    x = images(128)
    low, high = float(x.min()), float(x.max())
    assert float(first.input_scale) == pytest.approx((high - low) / 255, rel=1e-6)
    assert int(first.input_zero_point) == round(-low / float(first.input_scale))


# ----------------------------------------------------------------------------- the plan


def test_int8_is_a_precision_for_the_first_and_last_layers_and_for_globs():
    model = build("cnn")
    p = plan(model, PlanRules(first=Precision.INT8, last=Precision.INT8), input_shape=(1, 28, 28))
    assert p["features.0"].precision is Precision.INT8 and p["classifier.7"].precision is Precision.INT8
    assert Precision.INT8.bits == 8 and not Precision.INT8.binary_weights
    p = plan(model, PlanRules(int8=("classifier.*",)), input_shape=(1, 28, 28))
    assert {la.name for la in p.layers if la.precision is Precision.INT8} == {"classifier.1", "classifier.4",
                                                                              "classifier.7"}
    net = convert(model, p)
    assert isinstance(net.classifier[7], Int8Linear)
    summary = summarize(model, net, p).to_dict()
    assert {la["name"]: la["bits_per_weight"] for la in summary["layers"]}["classifier.7"] == 8


# ----------------------------------------------------------------------------- export


@pytest.mark.parametrize("kind", ["mlp", "cnn", "resnet"])
def test_int8_layers_export_with_exact_parity(kind):
    net = int8_net(kind)
    result = export_onnx(net, input_shape=(1, 28, 28), check_samples=256, reference_check=True)
    for p in result.parity:
        assert p.argmax_agreement == 1.0 and p.max_abs_diff == 0.0, p  # the same integers, the same float ops


def test_an_int8_first_conv_hands_bits_to_the_next_binary_conv_in_one_quantized_op():
    """QuantizeLinear -> QLinearConv (its requantization does the integer threshold) -> bits: no float op between the
    model's input and the first binary layer, weights stored as int8 (1 byte each) with no float copy."""
    net = int8_net("cnn", PlanRules(first=Precision.INT8, min_params=0, min_fan_in=0))
    proto, low = to_onnx(net, (1, 28, 28))
    first = low.specs[0]
    assert first.int8 and first.fused is not None
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    w = inits[f"b{first.index}:weight_int8"]
    assert w.dtype == np.int8 and w.size == first.layer.weight.numel()
    assert np.abs(w).max() == 63  # 2 * 255 * 63 < 2**15: no saturating 16-bit pair sums on AVX2
    nodes = list(proto.graph.node)
    assert [n.op_type for n in nodes[:3]] == ["QuantizeLinear", "QLinearConv", "Min"]  # input -> uint8 -> bits
    consumers = [n.op_type for n in nodes if nodes[2].output[0] in n.input]
    assert consumers == ["QLinearConv"]  # the bits go straight into the next binary conv
    assert "ConvInteger" not in {n.op_type for n in nodes}


def test_int8_layers_export_to_openvino_with_parity():
    from bnnc.export import export_openvino

    net = int8_net("cnn")
    result = export_openvino(net, input_shape=(1, 28, 28), check_samples=128)
    p = result.parity[0]
    assert p.argmax_agreement == 1.0 and p.mismatched == p.at_ties


def test_an_int8_conv_with_a_real_output_sums_in_a_float_conv_only_while_that_is_exact():
    """The ResNet stem feeds a residual add (a real output): its sums (at most 255 * 63 * 9) are exact in float32,
    so a float Conv computes them; past 2**24 the export keeps ONNX's ConvInteger."""
    net = int8_net("resnet")
    proto, low = to_onnx(net, (1, 28, 28))
    ops = {n.name: n.op_type for n in proto.graph.node}
    assert low.specs[0].int8 and low.specs[0].fused is None
    assert "stem.0/Conv" in ops and "stem.0/ConvInteger" not in ops
    wide = Int8Conv2d.from_float(nn.Conv2d(1100, 2, 1))  # 255 * 63 * 1100 > 2**24
    wide.set_input_range(-1.0, 1.0)
    model = nn.Sequential(wide, nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    from bnnc.layers import BinaryLinear

    model[3] = BinaryLinear.from_float(model[3], binary_input=True)
    proto, _ = to_onnx(model.eval(), (1100, 4, 4))
    assert "ConvInteger" in [n.op_type for n in proto.graph.node]


def test_an_int8_input_at_a_rounding_step_is_a_tie_and_one_between_steps_is_not():
    """Quantizing is a step function too: a value another runtime's float sum can move across ``(k + 1/2) * scale``
    explains a differing sample (OpenVINO sums a BatchNorm in its own way); one between two steps doesn't."""
    from bnnc.export.parity import rounding_ties

    torch.manual_seed(0)
    layer = Int8Linear.from_float(nn.Linear(8, 3))
    net = nn.Sequential(nn.Linear(8, 8), layer).eval()
    x = torch.randn(4, 8)
    with torch.no_grad():
        v = net[0](x)
    layer.input_scale.fill_(abs(float(v[2, 5])) / 40.5)  # sample 2 sits on a rounding step
    layer.input_zero_point.fill_(128)
    assert rounding_ties(net, x).tolist() == [False, False, True, False]


# ----------------------------------------------------------------------------- requantization in one step


def _between(proto: onnx.ModelProto, start: str, end_op: str) -> list[str]:
    """The ops from the consumer of tensor ``start`` to the first ``end_op``, following single consumers."""
    ops, x = [], start
    while True:
        (node,) = [n for n in proto.graph.node if x in n.input]
        ops.append(node.op_type)
        if node.op_type == end_op:
            return ops
        x = node.output[0]


def test_a_binary_sum_reaches_the_int8_last_layer_through_one_affine_step():
    """Binary Linear -> alpha -> BatchNorm (one channel decreasing) -> ReLU -> int8 Linear: the float steps that
    fed QuantizeLinear become one Mul and one Add on the int32 sum (int16 offsets), and the export stays exact."""
    net = int8_net("mlp", PlanRules(last=Precision.INT8, min_params=0, min_fan_in=0))
    bn = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d)][-1]
    with torch.no_grad():
        bn.weight[0] = -bn.weight[0]  # a decreasing channel: a negative slope
        bn.weight[1] = 0.0            # a constant channel
    proto, low = to_onnx(net, (1, 28, 28))
    last_binary = [n for n in proto.graph.node if n.op_type == "MatMulInteger"][-2]
    assert _between(proto, last_binary.output[0], "QuantizeLinear") == ["Cast", "Mul", "Add", "QuantizeLinear"]
    assert not any(i.data_type == onnx.TensorProto.DOUBLE for i in proto.graph.initializer)
    offsets = [numpy_helper.to_array(i) for i in proto.graph.initializer if i.name.endswith("rq.b")]
    assert len(offsets) == 1 and offsets[0].dtype == np.int16 and offsets[0].shape == (bn.num_features,)
    result = export_onnx(net, input_shape=(1, 28, 28), check_samples=512, reference_check=True)
    for p in result.parity:
        assert p.argmax_agreement == 1.0 and p.max_abs_diff == 0.0, p


def test_the_affine_step_reproduces_every_reachable_sum_or_is_not_used(monkeypatch):
    """The fit is exact on its table (rising, falling, constant and one-step channels), refuses a table no affine step
    gives, and the runtime's own check keeps the old graph when the fit is wrong."""
    from bnnc.export import requantize

    k = 64
    sums = np.arange(-k, k + 1, 2, dtype=np.float64)
    rng = np.random.default_rng(0)
    slopes = np.concatenate([rng.uniform(0.1, 3, 6), -rng.uniform(0.1, 3, 3), [0.0, 0.0, 40.0, 500.0]])
    offsets = np.concatenate([rng.uniform(-60, 200, len(slopes) - 4), [17.9, -9.0, 49.9, -500.0 * 60 + 3]])
    table = np.clip(np.rint(sums[:, None] * slopes + offsets), 0, 255).astype(np.uint8)  # the last: one step, at 60

    def exact(fit, table):
        a, b, step = fit
        y = (sums[:, None].astype(np.float32) * a).astype(np.float32) + b.astype(np.float32) * np.float32(step)
        return np.array_equal(np.clip(np.rint(y), 0, 255), table)

    usual = requantize.fit_affine(sums, table[:, :-1])
    assert exact(usual, table[:, :-1]) and usual[1].dtype == np.int16  # 2 bytes a channel
    steep = requantize.fit_affine(sums, table)  # the one-step channel's offset (-30,000) leaves the int16 grid too
    assert exact(steep, table) and steep[1].dtype == np.float32 and steep[2] == 1.0  # coarse: float32 offsets
    bumpy = table.copy()
    bumpy[k // 2, 0] = bumpy[k // 2 + 1, 0] + 3  # not monotone: no affine step
    assert requantize.fit_affine(sums, bumpy) is None

    net = int8_net("mlp", PlanRules(last=Precision.INT8, min_params=0, min_fan_in=0))
    before = [n.op_type for n in to_onnx(net, (1, 28, 28))[0].graph.node]
    real_fit = requantize.fit_affine

    def off_by_one(s, t):
        a, b, step = real_fit(s, t)
        return a, b + np.int16(round(1 / step)), step  # every value one step too high

    monkeypatch.setattr(requantize, "fit_affine", off_by_one)
    proto, _ = to_onnx(net, (1, 28, 28))
    ops = [n.op_type for n in proto.graph.node]
    assert ops != before and "Relu" in ops  # the old chain stayed
