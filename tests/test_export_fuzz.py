"""A second, independent export fuzzer: plain seeded random nets (no hypothesis), built to reach what
the first one (test_export.py) doesn't — pools before and after BatchNorms with negative scales,
dilated and grouped convolutions, LayerNorm, non-monotone activations (SiLU, GELU, ELU, PReLU) — each
exported and run in ONNX Runtime against torch on the same inputs."""

from __future__ import annotations

import random

import pytest
import torch
from test_export import binarized
from torch import nn

from bnnc.export import ExportError, check_parity, export_onnx, to_onnx
from bnnc.export.exporter import check_inputs
from bnnc.layers import binary_layers
from bnnc.planning import PlanRules, Precision

ACTIVATIONS = [nn.ReLU, nn.Hardtanh, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.ELU, nn.PReLU, nn.Tanh, nn.Identity]


def random_net(seed: int) -> tuple[nn.Module, tuple[int, ...]]:
    """A conv stack (1-D or 2-D) whose steps between convolutions come in a random order, then a head."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    two_d = rng.random() < 0.7
    conv, norm = (nn.Conv2d, nn.BatchNorm2d) if two_d else (nn.Conv1d, nn.BatchNorm1d)
    max_pool, avg_pool = (nn.MaxPool2d, nn.AvgPool2d) if two_d else (nn.MaxPool1d, nn.AvgPool1d)
    c, size = rng.choice([1, 2, 4]), rng.choice([12, 16]) if two_d else rng.choice([24, 32])
    shape = (c, size, size) if two_d else (c, size)
    layers: list[nn.Module] = []
    for _ in range(rng.randint(1, 3)):
        out = rng.choice([4, 8, 12])
        groups = rng.choice([1, 2, 4]) if c % 4 == 0 and out % 4 == 0 else 1
        dilation = rng.choice([1, 1, 2])
        k = rng.choice([1, 3])
        if (k - 1) * dilation + 1 > size:
            break
        layers.append(conv(c, out, k, padding=rng.choice([0, dilation * (k // 2)]), dilation=dilation, groups=groups,
                           bias=rng.random() < 0.5))
        size = size + 2 * layers[-1].padding[0] - dilation * (k - 1)
        c = out
        steps: list[nn.Module] = [norm(c), rng.choice(ACTIVATIONS)()]
        if size >= 4 and rng.random() < 0.6:
            steps.append(rng.choice([max_pool, max_pool, avg_pool])(2))
            size //= 2
        if rng.random() < 0.3:
            steps.append(norm(c))  # a second BatchNorm, e.g. after the pool
        rng.shuffle(steps)
        layers.extend(steps)
    layers.append(nn.Flatten())
    width = c * size * size if two_d else c * size
    if rng.random() < 0.4:
        layers.append(nn.LayerNorm(width))
    for _ in range(rng.randint(0, 2)):
        out = rng.choice([8, 16])
        layers += [nn.Linear(width, out), rng.choice([nn.BatchNorm1d(out), nn.LayerNorm(out), nn.Identity()]),
                   rng.choice(ACTIVATIONS)()]
        width = out
    layers.append(nn.Linear(width, rng.choice([3, 5])))
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(-1.5, 1.5)  # negative scales: decreasing steps before and after pools
                m.bias.uniform_(-0.3, 0.3)
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(-1.5, 1.5)
    return model.eval(), shape


def check(seed: int) -> None:
    model, shape = random_net(seed)
    rng = random.Random(seed + 1)  # a drawn plan: int8 first/last layers in a third of the nets each
    first, last = rng.choice([None, None, Precision.INT8]), rng.choice([None, None, Precision.INT8])
    net = binarized(model, shape, PlanRules(first=first, last=last, min_params=0, min_fan_in=0), seed=seed)
    if not binary_layers(net):  # e.g. a depthwise first conv, kept FP32, and the last layer: nothing to export
        with pytest.raises(ExportError, match="no binary layer"):
            export_onnx(net, input_shape=shape, check_samples=16)
        return
    try:
        result = export_onnx(net, input_shape=shape, check_samples=128)
    except ExportError as e:
        if "at float-rounding ties, more than" not in str(e):
            pytest.fail(f"seed {seed}: {e}")
        # a rightful refusal: a BatchNorm calibrated to a near-zero variance amplifies float rounding until many
        # bits are decided by it; every differing sample must still be at a real tie (no bug hidden)
        parity = check_parity(to_onnx(net, shape)[0].SerializeToString(), net, check_inputs(shape, None, 128, False)[0],
                              inputs="random")
        assert parity.unexplained == 0 and parity.at_ties > 0.02 * parity.samples, (seed, parity)
        return
    parity = result.parity[0]
    assert parity.argmax_agreement == 1.0 or parity.at_ties, (seed, parity)
    assert parity.max_rel_diff <= 1e-4 or parity.at_ties, (seed, parity)  # only a real tie may move a logit


CI_SEEDS = [*range(10), 19, 29, 42, 104, 113]  # 19, 29, 42: a max pool before a negative-scale BatchNorm (once
# lowered wrongly); 104: rounding-decided bits past the tie share (a rightful refusal); 113: nothing binary


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_random_orders_of_pools_norms_and_activations_export_with_parity(seed: int):
    check(seed)


@pytest.mark.fuzz
@pytest.mark.parametrize("seed", [s for s in range(400) if s not in CI_SEEDS])
def test_random_orders_long(seed: int):
    check(seed)
