"""The paper's shift-based arithmetic: AP2, shift-based BatchNorm and shift-based AdaMax.

Multiplying by a power of two is a bit shift, so the paper (Hubara et al., 2016, section 1.3,
algorithms 2 and 3) replaces the multiplications of BatchNorm and of the AdaMax step by
multiplications with ``AP2(x)``, the power of two nearest to ``x``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnnc.layers import set_submodule


def ap2(x: torch.Tensor) -> torch.Tensor:
    """``AP2(x) = sign(x) * 2^round(log2 |x|)``, with ``AP2(0) = 0``: the nearest power of two."""
    mag = torch.exp2(torch.round(torch.log2(x.abs())))
    return torch.where(x == 0, torch.zeros_like(x), torch.sign(x) * mag)


class _AP2STE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return ap2(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def ap2_ste(x: torch.Tensor) -> torch.Tensor:
    """AP2 in the forward pass, identity gradient (straight-through) in the backward pass."""
    return _AP2STE.apply(x)


class ShiftBatchNorm(_BatchNorm):
    """Shift-based batch normalization (paper, algorithm 2), a drop-in for ``nn.BatchNorm1d/2d``.

    Training, per channel over the batch::

        C(x)  = x - mean(x)
        var   = mean(C(x) * AP2(C(x)))                 # shift instead of squaring
        x_hat = C(x) * AP2(1 / sqrt(var + eps))        # shift instead of dividing
        y     = AP2(gamma) * x_hat + beta              # shift instead of scaling

    Evaluation uses the running mean/variance the same way. Every multiplier is a power of two;
    gradients pass through AP2 unchanged (straight-through).
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 3, 4, 5):
            raise ValueError(f"expected 2D to 5D input (got {x.dim()}D input)")

    @classmethod
    def from_batchnorm(cls, bn: _BatchNorm) -> ShiftBatchNorm:
        """A shift-based copy of ``bn`` with its affine parameters and running statistics."""
        new = cls(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                  track_running_stats=bn.track_running_stats,
                  device=bn.running_mean.device if bn.running_mean is not None else None)
        new.load_state_dict(bn.state_dict())
        new.train(bn.training)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        use_batch = self.training or self.running_mean is None
        if use_batch:
            mean = x.mean(dims)
            centered = x - mean.view(shape)
            var = (centered * ap2_ste(centered)).mean(dims)
            if self.training and self.running_mean is not None:
                self._update_running(mean.detach(), var.detach(), x.numel() // x.shape[1])
        else:
            mean, var = self.running_mean, self.running_var
            centered = x - mean.view(shape)
        y = centered * ap2_ste(torch.rsqrt(var + self.eps)).view(shape)
        if self.affine:
            y = y * ap2_ste(self.weight).view(shape) + self.bias.view(shape)
        return y

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        self.num_batches_tracked += 1
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * n / max(n - 1, 1)
        self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)


def use_shift_batchnorm(model: nn.Module) -> int:
    """Replace every BatchNorm layer of ``model`` (in place) by a :class:`ShiftBatchNorm`; returns how many."""
    swaps = [(name, m) for name, m in model.named_modules()
             if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and not isinstance(m, ShiftBatchNorm)]
    for name, bn in swaps:
        set_submodule(model, name, ShiftBatchNorm.from_batchnorm(bn))
    return len(swaps)


class ShiftAdaMax(torch.optim.Optimizer):
    """Shift-based AdaMax (paper, algorithm 3): AdaMax with its step multipliers rounded to powers of two.

    Per parameter, at step ``t``::

        m_t   = beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t   = max(beta2 * v_{t-1}, |g_t|)
        theta = theta - AP2(lr / (1 - beta1^t)) * m_t * AP2(1 / (v_t + eps))

    so the update is ``m_t`` shifted twice instead of multiplied and divided.
    """

    def __init__(
        self, params: Iterable[Any], lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8, weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0 or not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1 or eps <= 0 or weight_decay < 0:
            raise ValueError(f"invalid ShiftAdaMax settings lr={lr} betas={betas} eps={eps}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_inf"] = torch.zeros_like(p)
                state["step"] += 1
                m, v = state["exp_avg"], state["exp_inf"]
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                torch.maximum(v.mul_(beta2), g.abs(), out=v)
                lr_t = group["lr"] / (1 - beta1 ** float(state["step"]))
                step_size = ap2(torch.tensor(lr_t, dtype=p.dtype, device=p.device))
                p.sub_(m * ap2(1 / (v + group["eps"])) * step_size)
        return loss
