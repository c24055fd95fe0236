import math

import pytest
import torch
from conftest import build, images
from torch import nn

from bnnc.conversion import ConvertOptions, convert
from bnnc.planning import plan
from bnnc.shift import ShiftAdaMax, ShiftBatchNorm, ap2, use_shift_batchnorm


def _is_power_of_two(t: torch.Tensor) -> bool:
    e = torch.log2(t.abs())
    return bool(torch.all((e - torch.round(e)).abs() < 1e-4))  # up to the division used to measure it


def test_ap2_values():
    x = torch.tensor([0.0, 0.3, 0.75, -1.0, 3.0, -5.0, 1e-3])
    assert ap2(x).tolist() == pytest.approx([0.0, 0.25, 1.0, -1.0, 4.0, -4.0, 2.0 ** -10])


def _multiplier(bn: ShiftBatchNorm, x: torch.Tensor) -> torch.Tensor:
    """(y - beta) / (x - mean), per channel: the factor the layer applied."""
    y = bn(x)
    mean = x.mean((0, 2, 3)) if bn.training else bn.running_mean
    return ((y - bn.bias.view(1, -1, 1, 1)) / (x - mean.view(1, -1, 1, 1)))[0, :, 0, 0]


@pytest.mark.parametrize("training", [True, False])
def test_shift_bn_multiplies_by_powers_of_two_and_stays_close_to_batchnorm(training):
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.weight.uniform_(0.3, 3.0)
        bn.bias.uniform_(-1, 1)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 4)
    shift = ShiftBatchNorm.from_batchnorm(bn)
    bn.train(training)
    shift.train(training)
    x = torch.randn(32, 6, 5, 5) * 2 + 0.5
    with torch.no_grad():
        assert _is_power_of_two(_multiplier(shift, x))
        ratio = (shift(x) - shift.bias.view(1, -1, 1, 1)) / (bn(x) - bn.bias.view(1, -1, 1, 1))
    # AP2 of two factors: each within sqrt(2) of the exact value
    assert ratio.min() > 0.5 - 1e-5 and ratio.max() < 2 + 1e-5
    assert torch.corrcoef(torch.stack([shift(x).flatten(), bn(x).flatten()]))[0, 1] > 0.97


def test_shift_bn_trains_and_tracks_statistics():
    shift = ShiftBatchNorm(4)
    x = torch.randn(16, 4) * 3 + 2
    shift(x.requires_grad_(True)).sum().backward()
    assert shift.weight.grad is not None and x.grad is not None
    assert shift.num_batches_tracked == 1 and (shift.running_mean != 0).all()


def test_use_shift_batchnorm_round_trips_through_conversion():
    model = build("cnn")
    options = ConvertOptions(shift_bn=True)
    binary = convert(model, plan(model), options)
    assert use_shift_batchnorm(binary) == 0  # already swapped by convert
    assert sum(isinstance(m, ShiftBatchNorm) for m in binary.modules()) == 8
    again = convert(model, plan(model), ConvertOptions.from_dict(options.to_dict()))
    again.load_state_dict(binary.state_dict())
    binary.eval(), again.eval()
    torch.testing.assert_close(binary(images(4)), again(images(4)))


def test_shift_adamax_one_step_by_hand():
    p = nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = ShiftAdaMax([p], lr=0.01, betas=(0.9, 0.999))
    p.grad = torch.tensor([0.5, -0.1, 0.0])
    opt.step()
    # m = 0.1 g; v = |g|; lr_t = 0.01 / (1 - 0.9) = 0.1 -> AP2 0.125; AP2(1 / v) = 2, 8 (v = 0: m = 0)
    expected = torch.tensor([1.0 - 0.05 * 2 * 0.125, -2.0 + 0.01 * 8 * 0.125, 0.5])
    torch.testing.assert_close(p.detach(), expected)


def test_shift_adamax_second_step_uses_decayed_state():
    p = nn.Parameter(torch.tensor([0.0]))
    opt = ShiftAdaMax([p], lr=0.01, betas=(0.5, 0.5))
    for g in (1.0, 0.2):
        p.grad = torch.tensor([g])
        opt.step()
    # step 1: m=0.5, v=1, lr_t=0.02->AP2 1/64, AP2(1)=1 -> -0.5/64
    # step 2: m=0.35, v=max(0.5,0.2)=0.5, lr_t=0.01/0.75->AP2 1/64, AP2(2)=2 -> -0.7/64
    assert p.item() == pytest.approx(-(0.5 + 0.7) / 64)


def test_shift_adamax_rejects_bad_settings():
    with pytest.raises(ValueError):
        ShiftAdaMax([nn.Parameter(torch.zeros(1))], lr=-1)
    assert math.isclose(ap2(torch.tensor(1 / 3)).item(), 0.25)
