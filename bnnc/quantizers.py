"""Binarization functions of *Binarized Neural Networks* (Hubara, Courbariaux et al., 2016).

Each quantizer is a small function with a custom gradient, the straight-through estimator (STE)
with hard-tanh gradient cancelling: the gradient of sign is taken as that of
``Htanh(x) = clip(x, -1, 1)``, i.e. it passes where ``|x| <= 1`` and is cancelled elsewhere.
"""

from __future__ import annotations

import torch


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``sigma(x) = clip((x + 1) / 2, 0, 1)``: the probability of +1 in stochastic binarization."""
    return ((x + 1) / 2).clamp(0, 1)


def ste_mask(x: torch.Tensor) -> torch.Tensor:
    """The STE's gradient factor ``1_{|x| <= 1}`` (inclusive at exactly +-1), in ``x``'s dtype."""
    return (x.abs() <= 1).to(x.dtype)


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ste_mask(x)


class _StochasticSignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        u = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)
        return torch.where(u < hard_sigmoid(x), 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ste_mask(x), None


def binarize(x: torch.Tensor) -> torch.Tensor:
    """Deterministic binarization with the straight-through estimator.

    Forward:  ``x_b = +1 if x >= 0 else -1`` (so ``binarize(0) == +1``, unlike ``torch.sign``).
    Backward: ``dL/dx = dL/dx_b * 1_{|x| <= 1}`` (hard-tanh STE, paper eq. 4).
    """
    return _SignSTE.apply(x)


def stochastic_binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic binarization with the straight-through estimator.

    Forward:  ``x_b = +1`` with probability ``hard_sigmoid(x) = clip((x + 1) / 2, 0, 1)``,
              else ``-1``; so ``E[x_b] = clip(x, -1, 1)`` (paper eq. 2).
    Backward: ``dL/dx = dL/dx_b * 1_{|x| <= 1}``, as for :func:`binarize`.
    """
    return _StochasticSignSTE.apply(x, generator)
