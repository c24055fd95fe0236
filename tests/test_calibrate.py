import pytest
import torch
from torch import nn

from bnnc.calibrate import balanced_threshold, calibrate_thresholds
from bnnc.conversion import convert
from bnnc.layers import InputBinarizer
from bnnc.planning import PlanRules, plan

from conftest import build, images


def test_balanced_threshold_is_the_median_for_continuous_values():
    v = torch.randn(3, 1001, generator=torch.Generator().manual_seed(0)) + torch.tensor([[0.0], [2.0], [-1.0]])
    torch.testing.assert_close(balanced_threshold(v), v.median(dim=1).values)


def test_balanced_threshold_sends_relu_zeros_to_minus_one():
    v = torch.tensor([[0.0] * 7 + [0.2, 0.5, 0.9]])  # 70% zeros out of a ReLU: the median is 0
    beta = balanced_threshold(v)
    assert beta.item() == pytest.approx(0.1)  # halfway between 0 and the next value
    assert ((v >= beta[:, None]).float().mean()) == 0.3  # instead of 1.0 with beta = 0


def test_balanced_threshold_constant_channel():
    assert balanced_threshold(torch.zeros(2, 5)).tolist() == [0.0, 0.0]


def test_calibrate_sets_thresholds_in_execution_order_and_restores_mode():
    model = build("cnn")
    binary = convert(model, plan(model, PlanRules(min_params=0)))
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
