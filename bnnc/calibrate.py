"""Calibrate what binarizing shifted: input thresholds and BatchNorm statistics, on real inputs
(and the input range of each int8 layer: :mod:`bnnc.int8`).

Activations coming out of a ReLU are all >= 0, so ``binarize(x)`` would be all +1 and carry
no information. Each threshold is set per channel to the value that splits the real inputs
reaching that layer as evenly as possible into +1 and -1 (the median, with ties broken).
A binary layer's outputs also have a different scale and offset than the FP32 layer's, so the
BatchNorm statistics after it are stale: re-estimating them (measured on the sample MLP: 60.6%
-> 81.8% test accuracy before any training) is the cheapest accuracy there is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, Dataset

from bnnc.int8 import Int8Layer
from bnnc.layers import InputBinarizer

CALIBRATION_BATCH = 256
"""Samples per calibration batch (``--calibration-batches`` counts these)."""

VALUES_PER_BATCH = 4096
"""Values kept per channel from each batch: enough for a stable median, small for big convs."""

MAX_VALUES = 8 * VALUES_PER_BATCH
"""Values kept per channel over a whole pass: more calibration batches take fewer from each, so
the work stays linear in the batches (a median within 5% needs a few thousand values)."""

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
    values go together to the side that balances better. One sort of each row does all of it.
    """
    k = values.shape[1]
    s = values.sort(dim=1).values
    if k == 1:
        return s[:, 0]
    lo = max(0, min(k - 2, int((0.5 - WINDOW) * k)))
    hi = max(lo + 1, min(k - 1, int(np.ceil((0.5 + WINDOW) * k))))
    gaps = s[:, lo + 1:hi + 1] - s[:, lo:hi]                       # (C, hi - lo)
    gaps = torch.where(gaps > SMEAR * (s[:, lo:hi].abs() + 1), gaps, 0.0)  # copies of one value: no gap
    widest, at = gaps.max(dim=1)
    i = lo + at
    in_gap = (s.gather(1, i[:, None]) + SPLIT * widest[:, None])[:, 0]

    m = s[:, (k - 1) // 2][:, None]       # (C, 1): torch's median (the lower one)
    tol = SMEAR * (m.abs() + 1)           # the values within tol of m are m, smeared
    first = torch.searchsorted(s, m - tol, side="left")       # first index of the tied values
    after = torch.searchsorted(s, m + tol, side="right")      # one past the last
    ge = (k - first)[:, 0].float() / k     # share that goes +1 when the ties go +1
    gt = (k - after)[:, 0].float() / k     # share that goes +1 when they go -1
    m_lo = s.gather(1, first)[:, 0]
    m_hi = s.gather(1, (after - 1).clamp_min(0))[:, 0]
    below = torch.where(first > 0, s.gather(1, (first - 1).clamp_min(0)), -torch.inf)[:, 0]
    above = torch.where(after < k, s.gather(1, after.clamp_max(k - 1)), torch.inf)[:, 0]
    margin = CONSTANT_MARGIN * m[:, 0].abs().clamp_min(1.0)  # a constant channel: off its one value too
    low = torch.where(torch.isfinite(below), m_lo - SPLIT * (m_lo - below), m_lo - margin)    # m -> +1
    high = torch.where(torch.isfinite(above), m_hi + SPLIT * (above - m_hi), m_hi + margin)   # m -> -1
    tied = torch.where((gt - 0.5).abs() < (ge - 0.5).abs(), high, low)
    return torch.where(widest > 0, in_gap, tied)


def _channel_rows(x: torch.Tensor, channel_dim: int, generator: torch.Generator, keep: int) -> torch.Tensor:
    """(C, K) sample of ``x``'s values per channel, K <= ``keep``."""
    rows = x.detach().movedim(channel_dim, 0).reshape(x.shape[channel_dim], -1).float().cpu()
    if rows.shape[1] > keep:
        idx = torch.randperm(rows.shape[1], generator=generator)[:keep]
        rows = rows[:, idx]
    return rows


@torch.no_grad()
def calibrate_thresholds(
    model: nn.Module, batches: Iterable[Any], max_batches: int = 8, *, batchnorm: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
) -> int:
    """Set every input binarizer's ``beta`` (and every int8 layer's input range: the min and max of its
    inputs, ORT's MinMax calibration) from real inputs; returns the number of samples used.

    ``batches`` yields input tensors or ``(inputs, labels, ...)`` tuples, already preprocessed.
    Layers are calibrated in one pass in execution order: each threshold is updated before its
    layer runs (after the 1st, 2nd, 4th, 8th... batch, so the work stays linear in the batches),
    so later layers see inputs binarized with the thresholds chosen for earlier ones; after the
    pass each threshold is set from all the values it saw (at most ``MAX_VALUES`` per channel).
    With ``batchnorm`` the same pass re-estimates every BatchNorm's running statistics (a
    cumulative average over the batches, normalising with batch statistics meanwhile), and a
    second pass, where ``batches`` can be iterated again, sets the thresholds on the values the
    model computes with the final statistics. ``on_batch(done, total)`` reports progress.
    """
    binarizers = [m for m in model.modules() if isinstance(m, InputBinarizer) and m.beta is not None]
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)] if batchnorm else []
    int8 = [m for m in model.modules() if isinstance(m, Int8Layer)]
    if not binarizers and not norms and not int8:
        return 0
    ranges: dict[int, tuple[float, float]] = {}

    def range_hook(module: Int8Layer, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].detach()
        low, high = ranges.get(id(module), (float("inf"), float("-inf")))
        ranges[id(module)] = (min(low, float(x.min())), max(high, float(x.max())))
        module.set_input_range(*ranges[id(module)])  # before the layer runs: later layers see its output
    seen: dict[int, list[torch.Tensor]] = {id(b): [] for b in binarizers}
    generator = torch.Generator().manual_seed(0)
    keep = max(1, min(VALUES_PER_BATCH, MAX_VALUES // max(max_batches, 1)))

    def pre_hook(module: InputBinarizer, args: tuple[torch.Tensor, ...]) -> None:
        rows = seen[id(module)]
        rows.append(_channel_rows(args[0], module.channel_dim, generator, keep))
        if len(rows) & (len(rows) - 1) == 0:  # a power of two
            _set_threshold(module, rows)

    handles = [b.register_forward_pre_hook(pre_hook) for b in binarizers]
    handles += [m.register_forward_pre_hook(range_hook) for m in int8]
    device = next(model.parameters()).device
    again = bool(norms) and iter(batches) is not batches  # re-iterable: thresholds again, on the final statistics
    count = min(max_batches, len(batches)) if isinstance(batches, Sized) else max_batches
    progress = _Progress(on_batch, count * (1 + again))
    samples = 0
    try:
        with _fresh_batchnorm_statistics(model, norms):
            samples = _run(model, batches, max_batches, device, progress)
            _finish_pass(binarizers, seen)
            if again:
                for bn in norms:
                    bn.eval()
                for v in seen.values():
                    v.clear()
                ranges.clear()
                _run(model, batches, max_batches, device, progress)
                _finish_pass(binarizers, seen)
    finally:
        for h in handles:
            h.remove()
    return samples


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, train: Dataset[Any], batches: int, *, seed: int = 0) -> int:
    """Every BatchNorm's running statistics re-estimated on up to ``batches`` training batches with the
    model's weights as they are now (a cumulative average; everything else in eval mode): after
    fine-tuning the statistics were averaged over weights that kept changing (Bi-Real Net's BN
    re-estimation). Nothing else changes. Returns the number of samples used."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not norms:
        return 0
    device = next(model.parameters()).device
    with _fresh_batchnorm_statistics(model, norms):
        return _run(model, calibration_loader(train, seed), batches, device, _Progress(None, batches))


@contextlib.contextmanager
def _fresh_batchnorm_statistics(model: nn.Module, norms: list[_BatchNorm]) -> Iterator[None]:
    """Within: the model in eval mode but ``norms`` in train mode, their running statistics reset and
    averaged cumulatively over the batches run; after: modes and momenta as they were."""
    was_training = model.training
    momenta = [bn.momentum for bn in norms]
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
        bn.train()
    try:
        yield
    finally:
        model.train(was_training)
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum


def _set_threshold(module: InputBinarizer, rows: list[torch.Tensor]) -> None:
    beta = balanced_threshold(torch.cat(rows, 1))
    module.beta.copy_(beta.to(module.beta))  # type: ignore[union-attr]


def _finish_pass(binarizers: list[InputBinarizer], seen: dict[int, list[torch.Tensor]]) -> None:
    """Each threshold from every value its binarizer saw in the pass (unless just set from them all)."""
    for b in binarizers:
        rows = seen[id(b)]
        if rows and len(rows) & (len(rows) - 1):
            _set_threshold(b, rows)


class _Progress:
    """Counts batches over the passes for an ``on_batch(done, total)`` callback."""

    def __init__(self, on_batch: Callable[[int, int], None] | None, total: int) -> None:
        self.on_batch, self.total, self.done = on_batch, total, 0

    def step(self) -> None:
        self.done += 1
        if self.on_batch is not None:
            self.on_batch(self.done, max(self.total, self.done))


def _run(model: nn.Module, batches: Iterable[Any], max_batches: int, device: torch.device,
         progress: _Progress) -> int:
    samples = 0
    for i, batch in enumerate(batches):
        if i >= max_batches:
            break
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        model(x.to(device))
        samples += x.shape[0]
        progress.step()
    return samples


def calibration_loader(train: Dataset[Any], seed: int = 0, batch_size: int = CALIBRATION_BATCH) -> DataLoader[Any]:
    """Shuffled training batches for re-estimating thresholds and BatchNorm statistics; a last batch
    of one sample is dropped, since BatchNorm can't take statistics of one value."""
    n = len(train)  # type: ignore[arg-type]
    return DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=n > 1 and n % batch_size == 1,
                      generator=torch.Generator().manual_seed(seed))


def calibrate_on(model: nn.Module, train: Dataset[Any], batches: int, *, seed: int = 0, batchnorm: bool = False,
                 on_batch: Callable[[int, int], None] | None = None) -> int:
    """:func:`calibrate_thresholds` on up to ``batches`` shuffled batches of the training split ``train``:
    what ``convert --data``, fine-tuning's recalibration and the sensitivity pass each do."""
    return calibrate_thresholds(model, calibration_loader(train, seed), batches, batchnorm=batchnorm,
                                on_batch=on_batch)
