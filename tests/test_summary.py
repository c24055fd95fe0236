from torch import nn

from bnnc.conversion import convert
from bnnc.planning import PlanRules, plan
from bnnc.summary import model_bytes, summarize


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Linear(16, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(),
        nn.Linear(32, 40, bias=False), nn.BatchNorm1d(40), nn.ReLU(),
        nn.Linear(40, 4),
    )


def test_sizes_and_shares_by_hand():
    model = _net().eval()
    p = plan(model, PlanRules(min_params=0, min_fan_in=0), input_shape=(16,))
    binary = convert(model, p)
    s = summarize(model, binary, p)
    bn = 4 * 32 * 4 + 4 * 40 * 4  # weight, bias, running mean, running var
    fp32 = 4 * (16 * 32 + 32 * 40 + 40 * 4 + 4) + bn
    assert s.fp32_bytes == model_bytes(model) == fp32
    packed = (16 * 32) // 8 + (32 * 40) // 8
    extra = 4 * (32 + 40) + 4 * 32  # alphas of both layers, thresholds of the second
    assert s.binarized_bytes == packed + extra + bn + 4 * (40 * 4 + 4)
    assert s.compression == fp32 / s.binarized_bytes
    assert s.binary_weights == 16 * 32 + 32 * 40 and s.kept_weights == 160
    macs = 16 * 32 + 32 * 40 + 40 * 4
    assert s.binary_mac_share == (32 * 40) / macs
    assert s.binary_weight_mac_share == (16 * 32 + 32 * 40) / macs


def test_the_binarized_size_is_what_the_export_stores(tmp_path):
    """convert predicts, export and report call theoretical, one figure: the ONNX file's data, a lower bound
    of its size, below the unfolded estimate once BatchNorm folds into thresholds."""
    from bnnc.export import export_onnx, payload_bytes, predicted_payload

    model = _net().eval()
    p = plan(model, PlanRules(min_params=0, min_fan_in=0), input_shape=(16,))
    binary = convert(model, p)
    predicted = predicted_payload(binary, (16,))
    s = summarize(model, binary, p, predicted)
    assert s.binarized_bytes == predicted and s.size_from_export
    result = export_onnx(binary, tmp_path / "m.onnx", input_shape=(16,))
    import onnx

    assert result.theoretical_bytes == predicted == payload_bytes(onnx.load(tmp_path / "m.onnx"))
    assert predicted < result.onnx_bytes and predicted < model_bytes(binary)
    assert not summarize(model, binary, p).size_from_export


def test_to_dict_is_json_ready():
    import json

    model = _net().eval()
    p = plan(model, PlanRules(min_fan_in=0), input_shape=(16,))
    d = summarize(model, convert(model, p), p).to_dict()
    json.dumps(d)
    # first layer small (512 weights), hidden 1280 weights binary, last layer FP32
    assert [layer["bits_per_weight"] for layer in d["layers"]] == [32, 1, 32]
    assert d["totals"]["compression"] > 1
    narrow = plan(model, input_shape=(16,))  # by default a hidden layer summing 32 inputs stays FP32
    assert narrow["3"].precision.value == "fp32" and narrow["3"].reason.startswith("narrow: each output sums 32")
