import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import build, images
from torch import nn

from bnnc.conversion import ConvertOptions, convert, convert_file
from bnnc.errors import BnncError, OutputError, UntrustedModelError
from bnnc.layers import BinaryConv2d, BinaryLayer, BinaryLinear
from bnnc.loading import load_checkpoint, load_model
from bnnc.planning import PlanRules, Precision, plan


def _sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0)


def _expected(layer: BinaryLayer, x: torch.Tensor) -> torch.Tensor:
    """The layer's output from the formula, computed independently of its forward."""
    xb = x
    if layer.input_binarizer is not None:
        beta = layer.input_binarizer.beta
        view = [1] * x.dim()
        view[1 if isinstance(layer, nn.Conv2d) else -1] = -1
        xb = _sign(x - beta.view(view))
    wb = _sign(layer.weight)
    if isinstance(layer, nn.Conv2d):
        y = F.conv2d(xb, wb, None, layer.stride, layer.padding, layer.dilation, layer.groups)
        shape = (1, -1, 1, 1)
    else:
        y = F.linear(xb, wb)
        shape = (1, -1)
    y = y * layer.alpha.view(shape)
    return y + layer.bias.view(shape) if layer.bias is not None else y


def _check_every_layer(model: nn.Module, x: torch.Tensor, expect: dict[str, Precision]) -> None:
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: seen.__setitem__(n, (inp[0], out)))
             for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    for name, precision in expect.items():
        module = model.get_submodule(name)
        inp, out = seen[name]
        if precision is Precision.FP32:
            assert not isinstance(module, BinaryLayer), name
            continue
        assert isinstance(module, BinaryLayer), name
        assert module.binary_input == (precision is Precision.BINARY), name
        torch.testing.assert_close(out, _expected(module, inp), msg=name)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "resnet"])
def test_convert_file_then_load_model_computes_binary_exactly_where_planned(tmp_path, fp32_checkpoint, kind):
    src = fp32_checkpoint(kind)
    before = src.read_bytes()
    result = convert_file(src, tmp_path / "out.bnnc", input_shape=(1, 28, 28),
                          rules=PlanRules(min_params=0, min_fan_in=0))
    assert src.read_bytes() == before  # the input is never modified
    raw = torch.load(result.output, weights_only=True)  # reloads without running code
    assert raw["binarized"]["source"]["sha256"] == load_checkpoint(src).sha256

    loaded = load_checkpoint(result.output)
    assert loaded.is_binarized
    with torch.no_grad():  # non-zero thresholds, so the test sees beta used
        for m in loaded.model.modules():
            if isinstance(m, BinaryLayer) and m.input_binarizer is not None:
                m.input_binarizer.beta.uniform_(-0.2, 0.2)
    expect = result.summary.plan.precisions()
    assert set(expect.values()) == {Precision.WEIGHTS, Precision.BINARY, Precision.FP32}
    if kind != "mlp":
        assert any(isinstance(m, BinaryConv2d) and m.binary_input for m in loaded.model.modules())
    _check_every_layer(loaded.model, images(8), expect)


def test_reloaded_model_equals_converted_model(tmp_path, fp32_checkpoint):
    src = fp32_checkpoint("cnn")
    out = convert_file(src, tmp_path / "c.bnnc").output
    model = load_model(src)
    expected = convert(model, plan(model, input_shape=(1, 28, 28)))
    reloaded = load_model(out)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(images()), expected.eval()(images()))


def test_convert_does_not_modify_the_input_model():
    model = build("cnn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    new = convert(model, plan(model, PlanRules(min_params=0, min_fan_in=0)))
    assert not any(isinstance(m, BinaryLayer) for m in model.modules())
    assert isinstance(new.features[3], BinaryConv2d) and new.features[3].binary_input
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_plan_overrides_reach_the_layers():
    model = build("mlp")
    new = convert(model, plan(model, PlanRules(first=Precision.BINARY, last=Precision.WEIGHTS)))
    assert new.features[1].binary_input and isinstance(new.classifier, BinaryLinear)
    assert not new.classifier.binary_input


def test_options_are_stored_and_rebuilt(tmp_path, fp32_checkpoint):
    src = fp32_checkpoint("mlp")
    out = convert_file(src, tmp_path / "o.bnnc", options=ConvertOptions(scale=False, threshold=False,
                                                                         stochastic=True)).output
    layer = load_model(out).features[4]
    assert layer.alpha is None and layer.input_binarizer.beta is None and layer.input_binarizer.stochastic


def test_default_output_path_and_no_overwrite(fp32_checkpoint):
    src = fp32_checkpoint("mlp")
    result = convert_file(src)
    assert result.output == src.with_suffix(".bnnc")
    first = result.output.read_bytes()
    with pytest.raises(OutputError, match="already exists"):
        convert_file(src)
    assert result.output.read_bytes() == first
    convert_file(src, overwrite=True, rules=PlanRules(keep=("features.4",)))
    assert load_model(result.output).features[4].__class__ is nn.Linear


def test_output_equal_to_input_is_refused(fp32_checkpoint):
    src = fp32_checkpoint("mlp")
    before = src.read_bytes()
    with pytest.raises(OutputError, match="is the input"):
        convert_file(src, src, overwrite=True)
    assert src.read_bytes() == before


def test_converting_a_binarized_checkpoint_is_refused(tmp_path, fp32_checkpoint):
    out = convert_file(fp32_checkpoint("mlp"), tmp_path / "a.bnnc").output
    with pytest.raises(BnncError, match="already binarized"):
        convert_file(out, tmp_path / "b.bnnc")


def test_pickled_source_needs_trust_to_convert_and_to_reload(tmp_path):
    src = tmp_path / "whole.pt"
    torch.save(build("mlp"), src)
    with pytest.raises(UntrustedModelError):
        convert_file(src, tmp_path / "w.bnnc")
    out = convert_file(src, tmp_path / "w.bnnc", trust_model=True).output
    assert torch.load(out, weights_only=True)["arch"] is None
    with pytest.raises(UntrustedModelError, match="pickled"):
        load_model(out)
    assert isinstance(load_model(out, trust_model=True).features[4], BinaryLinear)


def test_a_whole_module_inside_a_training_checkpoint(tmp_path):
    """``{'model': model, 'epoch': 3}`` (YOLOv5's checkpoints: beside an 'ema', in half precision) is the pickled
    module under 'model', trusted only, computed in float32; two modules and no 'model' are one error."""
    model = build("mlp").eval()
    x = torch.randn(4, 1, 28, 28)
    torch.save({"model": build("mlp").eval().half(), "ema": None, "epoch": 3}, tmp_path / "half.pt")
    torch.save({"model": model, "epoch": 3, "optimizer": None}, tmp_path / "ckpt.pt")
    with pytest.raises(UntrustedModelError):
        load_checkpoint(tmp_path / "ckpt.pt")
    loaded = load_checkpoint(tmp_path / "ckpt.pt", trust_model=True)
    assert loaded.form == "pickled nn.Module under 'model' (trusted)" and torch.equal(loaded.model(x), model(x))
    half = load_checkpoint(tmp_path / "half.pt", trust_model=True).model
    assert {p.dtype for p in half.parameters()} == {torch.float32} and half(x).dtype == torch.float32
    torch.save({"student": model, "teacher": build("mlp")}, tmp_path / "two.pt")
    with pytest.raises(BnncError, match="a module under each of 'student', 'teacher'"):
        load_checkpoint(tmp_path / "two.pt", trust_model=True)
    assert isinstance(load_model(convert_file(tmp_path / "ckpt.pt", tmp_path / "c.bnnc", trust_model=True).output,
                                 trust_model=True).features[4], BinaryLinear)  # rebuilt from its source


def test_calibration_on_data_balances_the_binarized_inputs(tmp_path, fp32_checkpoint):
    pre = {"input_shape": [1, 28, 28], "mean": [0.5], "std": [0.25], "class_names": [str(i) for i in range(10)],
           "pixel_scale": 1 / 255}
    src = fp32_checkpoint("mlp", preprocessing=pre)
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=rng.integers(0, 256, (600, 28, 28), dtype=np.uint8), y_train=rng.integers(0, 10, 600),
             x_test=rng.integers(0, 256, (100, 28, 28), dtype=np.uint8), y_test=rng.integers(0, 10, 100))
    result = convert_file(src, tmp_path / "cal.bnnc", data=str(data), calibration_batches=2)
    assert result.calibration.samples == 512
    model = load_model(result.output).eval()
    binarizer = model.features[4].input_binarizer
    assert (binarizer.beta != 0).any()
    captured = {}
    h = binarizer.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    x = torch.from_numpy(rng.integers(0, 256, (256, 1, 28, 28), dtype=np.uint8)).float() / 255
    with torch.no_grad():
        model((x - 0.5) / 0.25)
    h.remove()
    plus = (captured["out"] > 0).float().mean(0)  # share of +1 per channel, after a ReLU
    assert 0.3 < plus.mean().item() < 0.7  # without thresholds it would be 1.0
