import pytest
import torch
from conftest import build, images
from torch import nn

from bnnc.calibrate import balanced_threshold, calibrate_thresholds
from bnnc.conversion import convert
from bnnc.layers import InputBinarizer
from bnnc.planning import PlanRules, plan


def test_balanced_threshold_splits_near_the_median_in_a_wide_gap():
    v = torch.randn(3, 1001, generator=torch.Generator().manual_seed(0)) + torch.tensor([[0.0], [2.0], [-1.0]])
    beta = balanced_threshold(v)
    share = (v >= beta[:, None]).float().mean(1)
    assert ((share - 0.5).abs() <= 0.051).all()  # balanced within the window
    assert not (v == beta[:, None]).any()
    s = v.sort(1).values  # in the widest gap of the window, far wider than float rounding
    gap = (s - beta[:, None]).abs().min(1).values
    assert (gap > 1e-4).all()


def test_balanced_threshold_steps_over_rounding_noise_on_a_lattice():
    lattice = torch.arange(-20, 21, dtype=torch.float32).repeat(50) * 0.25  # quantized activations
    noisy = lattice + torch.randn(lattice.shape, generator=torch.Generator().manual_seed(0)) * 1e-6
    beta = balanced_threshold(noisy[None])
    distance = (beta - lattice.unique()).abs().min()
    assert distance > 0.05  # inside a lattice gap (step 0.25), not between two noisy copies of one value


def test_balanced_threshold_sends_relu_zeros_to_minus_one():
    v = torch.tensor([[0.0] * 7 + [0.2, 0.5, 0.9]])  # 70% zeros out of a ReLU: the median is 0
    beta = balanced_threshold(v)
    assert 0 < beta.item() < 0.2  # between 0 and the next value
    assert ((v >= beta[:, None]).float().mean()) == 0.3  # instead of 1.0 with beta = 0


def test_balanced_threshold_constant_channel_is_a_robust_plus_one():
    beta = balanced_threshold(torch.tensor([[0.0] * 5, [3.0] * 5]))
    assert beta[0] == pytest.approx(-1e-3) and beta[1] == pytest.approx(3 - 3e-3)  # off the value, below it


def test_balanced_threshold_never_splits_copies_of_one_value():
    """0.0115 computed in two summation orders is two floats an ulp apart: one value, not a gap."""
    v = torch.tensor(0.011505591, dtype=torch.float32)
    smeared = [v.item(), torch.nextafter(v, torch.tensor(1.0)).item()]
    row = torch.tensor([[-0.05] * 10 + smeared * 5 + [0.07] * 10])
    beta = balanced_threshold(row)[0]
    assert not (smeared[0] < beta <= smeared[1])
    assert min(abs(beta - x) for x in row[0].tolist()) > 1e-5 * (abs(beta) + 1)


def test_calibrate_sets_thresholds_in_execution_order_and_restores_mode():
    model = build("cnn")
    binary = convert(model, plan(model, PlanRules(min_params=0, min_fan_in=0)))
    binary.train()
    samples = calibrate_thresholds(binary, [images(32, seed=1), (images(32, seed=2), torch.zeros(32))])
    assert samples == 64 and binary.training
    for m in binary.modules():
        if isinstance(m, InputBinarizer):
            assert (m.beta != 0).any()
    # each binarizer now sees a roughly balanced split of its (ReLU'd) inputs
    shares = []
    hooks = [m.register_forward_hook(lambda mod, i, o: shares.append((o > 0).float().mean().item()))
             for m in binary.modules() if isinstance(m, InputBinarizer)]
    binary.eval()
    with torch.no_grad():
        binary(images(64, seed=3))
    for h in hooks:
        h.remove()
    assert shares and all(0.25 < s < 0.75 for s in shares), shares


def test_calibrate_respects_max_batches_and_no_thresholds():
    model = build("mlp")
    binary = convert(model, plan(model))
    assert calibrate_thresholds(binary, (images(16, seed=i) for i in range(10)), max_batches=3) == 48
    plain = nn.Sequential(nn.Linear(3, 3))
    assert calibrate_thresholds(plain, [torch.randn(2, 3)]) == 0
