import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnnc.layers import BinaryConv1d, BinaryConv2d, BinaryLinear, InputBinarizer, clip_latent_weights
from bnnc.quantizers import binarize


def _sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0)


def _with_beta(layer, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.input_binarizer.beta.copy_(torch.randn(layer.input_binarizer.beta.shape, generator=g) * 0.3)
    return layer


def test_binary_linear_forward_formula():
    fp = nn.Linear(6, 4)
    layer = _with_beta(BinaryLinear.from_float(fp, binary_input=True))
    x = torch.randn(5, 6)
    beta = layer.input_binarizer.beta
    expected = F.linear(_sign(x - beta), _sign(fp.weight)) * fp.weight.abs().mean(1) + fp.bias
    torch.testing.assert_close(layer(x), expected)
    assert set(layer.binary_weight().unique().tolist()) <= {-1.0, 1.0}


def test_binary_linear_on_3d_input_thresholds_the_feature_dim():
    layer = _with_beta(BinaryLinear.from_float(nn.Linear(6, 4, bias=False), binary_input=True))
    x = torch.randn(2, 7, 6)
    expected = F.linear(_sign(x - layer.input_binarizer.beta), _sign(layer.weight)) * layer.alpha
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=3, stride=2, padding=0),
    dict(kernel_size=1, stride=2),
    dict(kernel_size=3, padding=1, groups=2),
    dict(kernel_size=3, padding=2, dilation=2, bias=False),
])
def test_binary_conv2d_forward_formula(kwargs):
    fp = nn.Conv2d(4, 6, **kwargs)
    layer = _with_beta(BinaryConv2d.from_float(fp, binary_input=True))
    x = torch.randn(2, 4, 9, 9)
    beta = layer.input_binarizer.beta.view(1, -1, 1, 1)
    conv_args = {k: v for k, v in kwargs.items() if k not in ("kernel_size", "bias")}
    expected = F.conv2d(_sign(x - beta), _sign(fp.weight), **conv_args)
    expected = expected * fp.weight.abs().flatten(1).mean(1).view(1, -1, 1, 1)
    if fp.bias is not None:
        expected = expected + fp.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expected)


def test_binary_conv1d_forward_formula():
    fp = nn.Conv1d(3, 5, 5, stride=2, padding=2)
    layer = _with_beta(BinaryConv1d.from_float(fp, binary_input=True))
    x = torch.randn(2, 3, 20)
    beta = layer.input_binarizer.beta.view(1, -1, 1)
    expected = F.conv1d(_sign(x - beta), _sign(fp.weight), stride=2, padding=2)
    expected = expected * fp.weight.abs().flatten(1).mean(1).view(1, -1, 1) + fp.bias.view(1, -1, 1)
    torch.testing.assert_close(layer(x), expected)


def test_weights_precision_keeps_real_input():
    fp = nn.Conv2d(3, 4, 3)
    layer = BinaryConv2d.from_float(fp, binary_input=False)
    x = torch.randn(1, 3, 6, 6)
    assert layer.input_binarizer is None and not layer.binary_input
    expected = F.conv2d(x, _sign(fp.weight)) * fp.weight.abs().flatten(1).mean(1).view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expected + fp.bias.view(1, -1, 1, 1))


def test_switches_off_scale_and_threshold():
    fp = nn.Linear(5, 3, bias=False)
    layer = BinaryLinear.from_float(fp, binary_input=True, scale=False, threshold=False)
    assert layer.alpha is None and layer.input_binarizer.beta is None
    x = torch.randn(4, 5)
    torch.testing.assert_close(layer(x), F.linear(_sign(x), _sign(fp.weight)))
    assert "alpha" not in layer.state_dict()


def test_from_float_copies_and_never_modifies_the_source():
    fp = nn.Linear(4, 3)
    with torch.no_grad():
        fp.weight[0, 0] = 3.0  # outside [-1, 1]
    before = copy.deepcopy(fp.state_dict())
    layer = BinaryLinear.from_float(fp, binary_input=True)
    for k, v in fp.state_dict().items():
        assert torch.equal(v, before[k])
    assert layer.weight[0, 0].item() == 1.0  # latent weights start clipped
    assert layer.alpha[0].item() == pytest.approx(fp.weight[0].abs().mean().item())  # alpha from unclipped W


def test_gradients_flow_to_weight_input_beta_alpha_with_ste():
    layer = _with_beta(BinaryLinear.from_float(nn.Linear(3, 2), binary_input=True))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -1.0, 1.5], [-0.2, 0.9, -2.0]]))
    x = torch.tensor([[0.1, 5.0, -0.3]], requires_grad=True)
    layer(x).sum().backward()
    assert layer.weight.grad[0, 2] == 0 and layer.weight.grad[1, 2] == 0  # |W| > 1: cancelled
    assert layer.weight.grad[0, 1] != 0  # |W| == 1: passes
    shifted = (x - layer.input_binarizer.beta).detach()
    assert ((x.grad[0] == 0) == (shifted[0].abs() > 1)).all()
    assert layer.input_binarizer.beta.grad is not None and layer.alpha.grad is not None
    torch.testing.assert_close(layer.input_binarizer.beta.grad, -x.grad[0])


def test_stochastic_binarizer_only_in_training():
    b = InputBinarizer(8, -1, threshold=False, stochastic=True)
    x = torch.full((1000, 8), 0.2)
    b.train()
    assert (b(x) == -1).any()  # P(+1) = 0.6
    b.eval()
    assert (b(x) == 1).all()


def test_clip_latent_weights_only_touches_binary_layers():
    model = nn.Sequential(nn.Linear(3, 3), BinaryLinear(3, 3))
    with torch.no_grad():
        model[0].weight.fill_(5.0)
        model[1].weight.fill_(-5.0)
    clip_latent_weights(model)
    assert (model[0].weight == 5).all() and (model[1].weight == -1).all()


def test_binarize_used_by_layers_is_the_quantizer():
    layer = BinaryLinear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, -0.0], [-1e-9, 1e-9]]))
    assert layer.binary_weight().tolist() == binarize(layer.weight).tolist() == [[1, 1], [-1, 1]]


def test_binary_layers_compute_in_float32_under_autocast():
    """Mixed precision must not round the +-1 sums or the thresholds of binary layers."""
    from bnnc.layers import BinaryConv2d, BinaryLinear

    torch.manual_seed(0)
    for layer, x in ((BinaryLinear(600, 8), torch.randn(4, 600)),
                     (BinaryConv2d(64, 8, 3), torch.randn(2, 64, 6, 6))):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = layer(x.to(torch.bfloat16))
            plain = torch.nn.functional.linear(x, layer.weight) if isinstance(layer, BinaryLinear) else None
        assert mixed.dtype == torch.float32
        assert torch.equal(mixed, layer(x.to(torch.bfloat16).float()))
        if plain is not None:
            assert plain.dtype == torch.bfloat16  # autocast is on for everything else


def test_clipped_weights_take_the_unmasked_gradient_until_they_change():
    """After clip_latent_weights the STE's mask is 1 everywhere, so binary_weight skips it: the same gradient
    without the pass. Any in-place change (an optimizer step) brings the masked gradient back until the next clip."""
    torch.manual_seed(0)
    layer = BinaryConv2d.from_float(nn.Conv2d(3, 4, 3), binary_input=True)
    with torch.no_grad():
        layer.weight.mul_(30)  # most weights beyond +-1
    x = torch.randn(2, 3, 6, 6)

    def weight_grad() -> torch.Tensor:
        layer.weight.grad = None
        layer(x).square().sum().backward()
        return layer.weight.grad.clone()

    unclipped = weight_grad()
    assert type(layer.binary_weight().grad_fn).__name__ == "_SignSTEBackward"
    assert (unclipped[layer.weight.detach().abs() > 1] == 0).all()  # cancelled beyond +-1
    clip_latent_weights(nn.Sequential(layer))
    assert type(layer.binary_weight().grad_fn).__name__ == "_ClippedSignSTEBackward"
    assert type(layer.eval().binary_weight().grad_fn).__name__ == "_SignSTEBackward"  # training only
    layer.train()
    fast = weight_grad()
    layer.__dict__.pop("_clipped")  # the masked path on the same clipped weights
    torch.testing.assert_close(fast, weight_grad(), rtol=0, atol=0)
    clip_latent_weights(nn.Sequential(layer))
    with torch.no_grad():
        layer.weight.mul_(2)  # changed in place since the clip
    assert type(layer.binary_weight().grad_fn).__name__ == "_SignSTEBackward"
    assert (weight_grad()[layer.weight.detach().abs() > 1] == 0).all()
