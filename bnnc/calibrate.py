"""Calibrate what binarizing shifted: input thresholds and BatchNorm statistics, on real inputs.

Activations coming out of a ReLU are all >= 0, so ``binarize(x)`` would be all +1 and carry
no information. Each threshold is set per channel to the value that splits the real inputs
reaching that layer as evenly as possible into +1 and -1 (the median, with ties broken).
A binary layer's outputs also have a different scale and offset than the FP32 layer's, so the
BatchNorm statistics after it are stale: re-estimating them (measured on the sample MLP: 60.6%
-> 81.8% test accuracy before any training) is the cheapest accuracy there is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from torch.nn.modules.batchnorm import _BatchNorm

from bnnc.layers import InputBinarizer

VALUES_PER_BATCH = 4096
"""Values kept per channel from each batch: enough for a stable median, small for big convs."""


WINDOW = 0.05
"""The threshold may move this share of the values off the median to sit in a wider gap."""

SPLIT = (3 - 5**0.5) / 2
"""Where in a gap the threshold goes (0.382): not halfway, because on a lattice (activations of
8-bit pixels) the midpoint of a gap two steps wide is itself a lattice value."""


SMEAR = 1e-5
"""Values this close (relative) are one value smeared by float rounding (e.g. an average pool of
the same lattice values summed in another order); a threshold never goes between them."""

CONSTANT_MARGIN = 1e-3
"""A channel with one value only (dead, or saturated) gets its threshold this far (relative) below
it: the bit is a robust +1 rather than a coin toss on the last ulp."""


def balanced_threshold(values: torch.Tensor) -> torch.Tensor:
    """Per-channel threshold for ``values`` shaped (C, K) that balances ``x >= beta``, robustly.

    The threshold sits inside the widest gap between consecutive sorted values within ``WINDOW``
    of the median (so at most a 55/45 split), at ``SPLIT`` of its width. Never sitting on or next to an observed
    value keeps the bits stable under the last-ulp differences between runtimes: inputs that are
    quantized (8-bit pixels) give activations on a lattice, each lattice value smeared by float
    rounding, and a threshold between two smeared copies of one value would flip with the
    rounding. Where the window holds one value only (e.g. the zeros out of a ReLU), the tied
    values go together to the side that balances better.
    """
    k = values.shape[1]
    s = values.sort(dim=1).values
    lo = max(0, min(k - 2, int((0.5 - WINDOW) * k)))
    hi = max(lo + 1, min(k - 1, int(np.ceil((0.5 + WINDOW) * k))))
    gaps = s[:, lo + 1:hi + 1] - s[:, lo:hi]                       # (C, hi - lo)
    gaps = torch.where(gaps > SMEAR * (s[:, lo:hi].abs() + 1), gaps, 0.0)  # copies of one value: no gap
    widest, at = gaps.max(dim=1)
    i = lo + at
    in_gap = (s.gather(1, i[:, None]) + SPLIT * widest[:, None])[:, 0]

    m = values.median(dim=1).values[:, None]  # (C, 1): ties at the median, smeared copies included
    same = (values - m).abs() <= SMEAR * (m.abs() + 1)
    ge = ((values >= m) | same).float().mean(1)
    gt = ((values > m) & ~same).float().mean(1)
    m_lo = torch.where(same, values, torch.inf).min(1).values
    m_hi = torch.where(same, values, -torch.inf).max(1).values
    below = torch.where((values < m) & ~same, values, -torch.inf).max(1).values
    above = torch.where((values > m) & ~same, values, torch.inf).min(1).values
    margin = CONSTANT_MARGIN * m[:, 0].abs().clamp_min(1.0)  # a constant channel: off its one value too
    low = torch.where(torch.isfinite(below), m_lo - SPLIT * (m_lo - below), m_lo - margin)    # m -> +1
    high = torch.where(torch.isfinite(above), m_hi + SPLIT * (above - m_hi), m_hi + margin)   # m -> -1
    tied = torch.where((gt - 0.5).abs() < (ge - 0.5).abs(), high, low)
    return torch.where(widest > 0, in_gap, tied) if k > 1 else values[:, 0]


def _channel_rows(x: torch.Tensor, channel_dim: int, generator: torch.Generator) -> torch.Tensor:
    """(C, K) sample of ``x``'s values per channel, K <= VALUES_PER_BATCH."""
    rows = x.detach().movedim(channel_dim, 0).reshape(x.shape[channel_dim], -1).float().cpu()
    if rows.shape[1] > VALUES_PER_BATCH:
        idx = torch.randperm(rows.shape[1], generator=generator)[:VALUES_PER_BATCH]
        rows = rows[:, idx]
    return rows


@torch.no_grad()
def calibrate_thresholds(
    model: nn.Module, batches: Iterable[Any], max_batches: int = 8, *, batchnorm: bool = False
) -> int:
    """Set every input binarizer's ``beta`` from real inputs; returns the number of samples used.

    ``batches`` yields input tensors or ``(inputs, labels, ...)`` tuples, already preprocessed.
    Layers are calibrated in one pass in execution order: each threshold is updated before its
    layer runs, so later layers see inputs binarized with the thresholds chosen for earlier ones.
    With ``batchnorm`` the same pass re-estimates every BatchNorm's running statistics (a
    cumulative average over the batches, normalising with batch statistics meanwhile), and a
    second pass, where ``batches`` can be iterated again, sets the thresholds on the values the
    model computes with the final statistics.
    """
    binarizers = [m for m in model.modules() if isinstance(m, InputBinarizer) and m.beta is not None]
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)] if batchnorm else []
    if not binarizers and not norms:
        return 0
    seen: dict[int, list[torch.Tensor]] = {id(b): [] for b in binarizers}
    generator = torch.Generator().manual_seed(0)

    def pre_hook(module: InputBinarizer, args: tuple[torch.Tensor, ...]) -> None:
        seen[id(module)].append(_channel_rows(args[0], module.channel_dim, generator))
        beta = balanced_threshold(torch.cat(seen[id(module)], 1))
        module.beta.copy_(beta.to(module.beta))  # type: ignore[union-attr]

    handles = [b.register_forward_pre_hook(pre_hook) for b in binarizers]
    device = next(model.parameters()).device
    was_training = model.training
    momenta = [bn.momentum for bn in norms]
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
        bn.train()
    samples = 0
    try:
        samples = _run(model, batches, max_batches, device)
        if norms and iter(batches) is not batches:  # re-iterable: thresholds again, on the final statistics
            for bn in norms:
                bn.eval()
            for v in seen.values():
                v.clear()
            _run(model, batches, max_batches, device)
    finally:
        model.train(was_training)
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum
        for h in handles:
            h.remove()
    return samples


def _run(model: nn.Module, batches: Iterable[Any], max_batches: int, device: torch.device) -> int:
    samples = 0
    for i, batch in enumerate(batches):
        if i >= max_batches:
            break
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        model(x.to(device))
        samples += x.shape[0]
    return samples
