"""Binarization functions of *Binarized Neural Networks* (Hubara, Courbariaux et al., 2016).

Each quantizer is a small function with a custom gradient, the straight-through estimator (STE)
with hard-tanh gradient cancelling: the gradient of sign is taken as that of
``Htanh(x) = clip(x, -1, 1)``, i.e. it passes where ``|x| <= 1`` and is cancelled elsewhere.
"""

from __future__ import annotations

import numpy as np
import torch


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``sigma(x) = clip((x + 1) / 2, 0, 1)``: the probability of +1 in stochastic binarization."""
    return ((x + 1) / 2).clamp(0, 1)


def ste_mask(x: torch.Tensor) -> torch.Tensor:
    """The STE's gradient factor ``1_{|x| <= 1}`` (inclusive at exactly +-1), in ``x``'s dtype."""
    return (x.abs() <= 1).to(x.dtype)


def sign_of(x: torch.Tensor) -> torch.Tensor:
    """``+1 where x >= 0 else -1`` in ``x``'s dtype (``-0.0`` gives +1, NaN -1, as the export's ``w >= 0``).

    Written as ``2 * (x >= 0) - 1`` in two passes, the comparison straight into a tensor of ``x``'s dtype: on
    CPU about 9x faster than ``torch.where`` with scalars and 3x faster than a bool mask converted and scaled in
    place (0.5-0.6 against 1.3-2.2 ms per 1M weights, one thread), which had cost a fine-tuning step of the
    sample MLP more than its matrix products."""
    out = torch.empty_like(x)
    torch.ge(x, 0, out=out)
    minus_one = torch.full((), -1.0, dtype=x.dtype)  # a 0-dim CPU tensor acts as a scalar on any device
    return torch.add(minus_one, out, alpha=2, out=out)


_OPEN_BOUNDS = {torch.float32: (float(np.nextafter(np.float32(-1), np.float32(-2))),
                                float(np.nextafter(np.float32(1), np.float32(2)))),
                torch.float64: (float(np.nextafter(-1.0, -2.0)), float(np.nextafter(1.0, 2.0)))}


def ste_gradient(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``grad * 1_{|x| <= 1}``: the STE's backward. For float32/float64 one fused kernel, hard-tanh's own backward
    (which passes the gradient strictly inside its bounds) with bounds one ulp outside +-1, so that it is
    inclusive at exactly +-1 as :func:`ste_mask` (clipped latent weights sit there); 4x faster than the
    product on CPU. Other dtypes take the product."""
    bounds = _OPEN_BOUNDS.get(x.dtype)
    if bounds is None or grad.dtype != x.dtype:
        return grad * ste_mask(x)
    return torch.ops.aten.hardtanh_backward(grad, x, bounds[0], bounds[1])


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return sign_of(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return ste_gradient(grad, x)


class _StochasticSignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        u = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)
        return torch.where(u < hard_sigmoid(x), 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return ste_gradient(grad, x), None


def approx_sign_grad(x: torch.Tensor) -> torch.Tensor:
    """ApproxSign's gradient factor ``(2 - 2|x|) * 1_{|x| <= 1}`` (Bi-Real Net, Liu et al., 2018): the
    derivative of the piecewise quadratic ``2x + x^2`` (x < 0), ``2x - x^2`` (x >= 0), clipped to +-1,
    which follows sign closer than hard-tanh's box."""
    return (2 - 2 * x.abs()).clamp_min(0).to(x.dtype)


class _ApproxSignSTE(_SignSTE):
    """The same sign forward; only the gradient differs."""

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * approx_sign_grad(x)


def binarize(x: torch.Tensor) -> torch.Tensor:
    """Deterministic binarization with the straight-through estimator.

    Forward:  ``x_b = +1 if x >= 0 else -1`` (so ``binarize(0) == +1``, unlike ``torch.sign``).
    Backward: ``dL/dx = dL/dx_b * 1_{|x| <= 1}`` (hard-tanh STE, paper eq. 4).
    """
    return _SignSTE.apply(x)


class _ClippedSignSTE(_SignSTE):
    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def binarize_clipped(x: torch.Tensor) -> torch.Tensor:
    """:func:`binarize` of an ``x`` known to lie in [-1, 1] (latent weights just clipped).

    Forward:  ``x_b = +1 if x >= 0 else -1``, as :func:`binarize`.
    Backward: ``dL/dx = dL/dx_b``: the STE's ``1_{|x| <= 1}`` is 1 everywhere in [-1, 1], so the gradient is
    the same as :func:`binarize`'s without a pass over every weight (the largest part of a fine-tuning step's
    extra work once the sign itself was fast).
    """
    return _ClippedSignSTE.apply(x)


def approx_sign(x: torch.Tensor) -> torch.Tensor:
    """Deterministic binarization with Bi-Real Net's ApproxSign gradient.

    Forward:  ``x_b = +1 if x >= 0 else -1``, exactly :func:`binarize` (so the export is unchanged).
    Backward: ``dL/dx = dL/dx_b * (2 - 2|x|) * 1_{|x| <= 1}`` (:func:`approx_sign_grad`): large near 0,
    where a small change flips the sign, and fading to 0 at +-1.
    """
    return _ApproxSignSTE.apply(x)


def ede_sharpness(progress: float, t_min: float = 0.1, t_max: float = 10.0) -> float:
    """IR-Net's schedule for the error decay estimator: ``t = t_min * (t_max / t_min) ** progress``, ``progress``
    the share of the training steps done (0 to 1): from 0.1, a gradient that passes almost everywhere, to 10, one
    that passes only near the sign's step (Qin et al., 2020, "Forward and Backward Information Retention")."""
    return t_min * (t_max / t_min) ** min(max(progress, 0.0), 1.0)


def ede_grad(x: torch.Tensor, t: float) -> torch.Tensor:
    """The error decay estimator's gradient factor ``k * t * (1 - tanh(t x)^2)``, ``k = max(1 / t, 1)``: the
    derivative of ``k * tanh(t x)``. At ``t = 0.1`` it is over 0.9 wherever ``|x| < 3`` (nearly the identity's
    gradient); at ``t = 10`` it is 10 at 0 and under 0.02 beyond ``|x| = 0.4`` (nearly sign's own)."""
    k = max(1.0 / t, 1.0)
    return (k * t) * (1 - torch.tanh(t * x).square())


class _EdeSignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, t: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.t = t
        return sign_of(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad * ede_grad(x, ctx.t).to(grad.dtype), None


def ede_sign(x: torch.Tensor, t: float) -> torch.Tensor:
    """Deterministic binarization with IR-Net's error decay estimator (EDE).

    Forward:  ``x_b = +1 if x >= 0 else -1``, exactly :func:`binarize` (so the export is unchanged).
    Backward: ``dL/dx = dL/dx_b * k t (1 - tanh(t x)^2)`` (:func:`ede_grad`), ``t`` following
    :func:`ede_sharpness` over the run: early on nearly every activation gets a gradient, which updates the
    layers below where the paper's box would cancel it; at the end the gradient is sign's, sharp at 0.
    """
    return _EdeSignSTE.apply(x, t)


def stochastic_binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic binarization with the straight-through estimator.

    Forward:  ``x_b = +1`` with probability ``hard_sigmoid(x) = clip((x + 1) / 2, 0, 1)``,
              else ``-1``; so ``E[x_b] = clip(x, -1, 1)`` (paper eq. 2).
    Backward: ``dL/dx = dL/dx_b * 1_{|x| <= 1}``, as for :func:`binarize`.
    """
    return _StochasticSignSTE.apply(x, generator)


# ----------------------------------------------------------------------------- 8 bits for the kept layers

UINT8_MAX = 255
INT8_MAX = 63
"""The int8 weights' range, +-63 (7 bits, as ONNX Runtime's ``reduce_range``): on x86 CPUs without VNNI,
ORT's uint8 x int8 kernels add pairs of products in saturating 16-bit lanes (``vpmaddubsw``), and
2 * 255 * 63 fits where 2 * 255 * 127 would saturate and change the sum."""


def quantize_uint8(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """``q = clamp(round(x / scale) + zero_point, 0, 255)`` (round half to even), as float integers.

    Divides, as ONNX Runtime's ``QuantizeLinear`` does (multiplying by ``1 / scale`` rounds
    differently on a tenth of the ties), so the exported model quantizes every input identically.
    """
    return (torch.round(x / scale) + zero_point).clamp(0, UINT8_MAX)


class _FakeQuantSTE(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor
    ) -> torch.Tensor:
        q = torch.round(x / scale) + zero_point
        ctx.save_for_backward((q >= 0) & (q <= UINT8_MAX))
        return (q.clamp(0, UINT8_MAX) - zero_point) * scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype), None, None


def fake_quantize_uint8(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """Asymmetric 8-bit activation quantization with the straight-through estimator.

    Forward:  ``x_q = (quantize_uint8(x) - zero_point) * scale``, the value the int8 kernel sees.
    Backward: ``dL/dx = dL/dx_q * 1_{0 <= round(x / scale) + zero_point <= 255}``: the gradient passes
    inside the representable range and is cancelled where the input saturates (as the BNN STE
    cancels it beyond +-1).
    """
    return _FakeQuantSTE.apply(x, scale, zero_point)


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def int8_weights(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel 8-bit weights: ``(w_q, scale)`` with ``w ~ w_q * scale``.

    ``scale_c = max |w_c| / INT8_MAX`` and ``w_q = round(w / scale_c)`` in [-63, 63] (float integers, stored as int8);
    the rounding passes the gradient straight through, so fine-tuning trains the latent weights.
    """
    scale = w.detach().abs().flatten(1).amax(1).clamp_min(torch.finfo(torch.float32).tiny) / INT8_MAX
    view = (-1,) + (1,) * (w.dim() - 1)
    return _RoundSTE.apply(w / scale.view(view)).clamp(-INT8_MAX, INT8_MAX), scale
