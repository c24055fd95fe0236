"""Folding what sits between two binary layers into one integer threshold per channel.

Between the integer accumulator ``s`` of a binary layer (``s = x_b . W_b``, an integer in
``[-K, K]`` for fan-in ``K``) and the next layer's binarizer, a network applies per-channel
monotone functions: the layer's scale and bias, BatchNorm, ReLU... The next layer's input bit is
``f_c(s) - beta >= 0`` with ``f_c`` that chain. Because ``f_c`` is monotone, the bit is
``s >= T`` (or ``s <= T`` where ``f_c`` decreases — handled by negating that channel's weight
row, so every comparison is ``>=``). This is the FINN recipe (Umuroglu et al., 2017).

``T`` is found by evaluating torch's own ``f_c`` on every integer candidate, so ties round
exactly as the PyTorch model rounds them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FoldedThresholds:
    """``bit = (sign * s >= threshold)``: ``sign`` (C,) is +-1, ``threshold`` (C, P).

    Integer thresholds (int64) for a binary layer's integer ``s``: ``-K`` means always 1,
    ``K + 1`` never. Float thresholds (float32, +-inf for always/never) for the real-valued
    output of a layer whose input is real (the paper's first layer). ``P`` positions per channel
    (1 unless the next layer sees the channel flattened, with one ``beta`` per position).
    """

    sign: torch.Tensor       # (C,) int64 in {-1, +1}
    threshold: torch.Tensor  # (C, P) int64 or float32


class NotMonotone(ValueError):
    """The chain between two binary layers isn't monotone per channel: it can't become a threshold."""


def integer_thresholds(values: torch.Tensor, beta: torch.Tensor) -> FoldedThresholds:
    """Folded thresholds from ``values[i, c] = f_c(i - K)`` (``2K + 1`` rows) and ``beta`` (C, P).

    For each channel the orientation ``sign`` makes ``f_c(sign * s)`` non-decreasing; the
    threshold is the smallest ``s`` with ``f_c(sign * s) >= beta`` (``x - beta >= 0`` and
    ``x >= beta`` agree for finite floats). Raises :class:`NotMonotone` if no orientation works.
    """
    rows, channels = values.shape
    k = (rows - 1) // 2
    if rows != 2 * k + 1 or beta.shape[0] != channels:
        raise ValueError(f"values {tuple(values.shape)} and beta {tuple(beta.shape)} don't match")
    if not torch.isfinite(values).all():
        raise NotMonotone("the chain gives non-finite values")
    decreasing = values[-1] < values[0]                                   # (C,)
    oriented = torch.where(decreasing, values.flip(0), values)            # f_c(sign * s), s = -K..K
    if not bool((oriented[1:] >= oriented[:-1]).all()):
        raise NotMonotone("the chain between the two binary layers is not monotone in each channel")
    first = torch.searchsorted(oriented.t().contiguous(), beta.to(values.dtype).contiguous(), side="left")
    sign = torch.where(decreasing, -1, 1).to(torch.int64)
    return FoldedThresholds(sign=sign, threshold=first.to(torch.int64) - k)


SEARCH_LIMIT = 1e30
"""Float thresholds are searched within +-SEARCH_LIMIT (no activation is larger)."""


def _key(y: torch.Tensor) -> torch.Tensor:
    """float32 -> int64 that orders like the floats (-0 and +0 both map to 0)."""
    bits = y.to(torch.float32).view(torch.int32).to(torch.int64)
    return torch.where(bits >= 0, bits, -(bits & 0x7FFFFFFF))


def _unkey(k: torch.Tensor) -> torch.Tensor:
    bits = torch.where(k >= 0, k, (-k) | 0x80000000).to(torch.int64)
    bits = torch.where(bits >= 2**31, bits - 2**32, bits).to(torch.int32)
    return bits.view(torch.float32)


def float_thresholds(chain: Callable[[torch.Tensor], torch.Tensor], beta: torch.Tensor) -> FoldedThresholds:
    """Folded thresholds on a real-valued ``y`` from ``chain`` (C, P) -> (C, P), ``f_c(y)`` elementwise, and
    ``beta`` (C, P).

    Binary search over the float32 values in order: the threshold is the smallest float ``y``
    with ``f_c(sign * y) - beta >= 0``, so it reproduces torch's chain exactly for every ``y``.
    """
    limit = torch.full(beta.shape, SEARCH_LIMIT)
    with torch.no_grad():
        low_f, high_f = chain(-limit), chain(limit)
        decreasing = (high_f < low_f)[:, 0]
        sign = torch.where(decreasing, -1, 1).to(torch.int64)
        s = sign.view(-1, 1).to(torch.float32)

        def passes(y: torch.Tensor) -> torch.Tensor:
            return (chain(s * y) - beta) >= 0

        grid = torch.cat([-torch.logspace(30, -30, 128), torch.zeros(1), torch.logspace(-30, 30, 128)])
        steps = torch.stack([passes(torch.full(beta.shape, float(g))) for g in grid])  # (G, C, P)
        if bool((steps[:-1] & ~steps[1:]).any()):
            raise NotMonotone("the chain after the layer is not monotone in each channel")
        lo, hi = _key(-limit), _key(limit)
        always, never = passes(-limit), ~passes(limit)
        for _ in range(34):
            mid = (lo + hi) // 2
            ok = passes(_unkey(mid))
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok, lo, mid)
        t = _unkey(hi)
        t = torch.where(always, -torch.inf, torch.where(never, torch.inf, t))
    return FoldedThresholds(sign=sign, threshold=t)


def bisect_integer_thresholds(chain: Callable[[torch.Tensor], torch.Tensor], beta: torch.Tensor,
                              bound: int) -> FoldedThresholds:
    """Integer thresholds on an accumulator in [-bound, bound] too wide to enumerate (an int8 layer's).

    ``chain`` maps int64 accumulators (C, P) to ``f_c(acc)`` (C, P) as torch computes them; the
    threshold is the smallest ``acc`` with ``f_c(sign * acc) >= beta``, found by bisection (64 steps
    cover any int64 range), after checking monotonicity on a grid. ``-bound`` means always 1,
    ``bound + 1`` never, as for :func:`integer_thresholds`.
    """
    full = torch.full(beta.shape, bound, dtype=torch.int64)
    with torch.no_grad():
        decreasing = (chain(full) < chain(-full))[:, 0]
        sign = torch.where(decreasing, -1, 1).to(torch.int64)

        def passes(acc: torch.Tensor) -> torch.Tensor:
            return (chain(sign.view(-1, 1) * acc) - beta) >= 0

        grid = torch.linspace(-bound, bound, 257).round().to(torch.int64)
        steps = torch.stack([passes(torch.full(beta.shape, int(g), dtype=torch.int64)) for g in grid])
        if bool((steps[:-1] & ~steps[1:]).any()):
            raise NotMonotone("the chain after the layer is not monotone in each channel")
        always, never = passes(-full), ~passes(full)
        lo, hi = -full, full.clone()  # passes(hi) wherever not never; the answer is in (lo, hi]
        for _ in range(64):
            mid = torch.div(lo + hi, 2, rounding_mode="floor")
            ok = passes(mid)
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok, lo, mid)
            if bool((hi - lo <= 1).all()):
                break
        t = torch.where(always, -full, torch.where(never, full + 1, hi))
    return FoldedThresholds(sign=sign, threshold=t)
