"""Bop: binary weights trained without latent weights (Helwegen et al., 2019, "Latent weights do not exist").

A latent weight's magnitude is only inertia: it says how long the gradient must push before the sign flips. Bop
states that directly. Per binary weight ``w``, with the gradient ``g`` of each step::

    m <- (1 - gamma) * m + gamma * g              # the gradient's exponential moving average
    v <- (1 - gamma) * v + gamma * g^2            # and its mean square, over the same window
    flip w   where   sign(w) * m / sqrt(v) > tau

The paper compares ``m`` itself with ``tau``, a threshold in gradient units. Those differ by orders of magnitude
between layers and models (the three sample models after conversion, one batch: mean |g| per binary layer from
2e-11 to 1.5), so one ``tau`` can't serve every user's model. Dividing by the root mean square over the same
window, as the second-order Bop of Suarez-Ramirez et al. (2021) does, makes the ratio dimensionless: ``tau``
is how consistently the gradient has pointed across zero. ``m`` and ``v`` start at 0 without bias correction,
so by Cauchy-Schwarz ``|m| / sqrt(v) <= sqrt(1 - (1 - gamma)^t)``: no weight flips before about
``tau^2 / gamma`` consistent steps, and random gradients reach only about ``sqrt(gamma / 2)``.

``gamma`` is the group's learning rate, so the schedule (cosine, warm-up) scales it: as it decays, ``m`` and
``v`` freeze and the flips stop. A flip negates the stored weight; its magnitude is never used (the layers
compute with ``binarize(w)`` and a learned per-channel ``alpha``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from bnnc.shift import ShiftAdaMax


def bop_flips(w: torch.Tensor, m: torch.Tensor, v: torch.Tensor, threshold: float) -> torch.Tensor:
    """Where the averaged gradient has pushed ``w`` towards the other sign: ``sign(w) * m / sqrt(v) > threshold``.

    Gradient descent lowers ``w`` where ``g > 0``, so a weight at +1 flips where ``m / sqrt(v) > threshold``
    and one at -1 where it is below ``-threshold`` (a weight of 0 binarizes to +1, so counts as positive).
    Computed as ``sign(w) * m > threshold * sqrt(v)``: no division, and nothing flips where no gradient was
    seen (``v = 0`` means ``m = 0``)."""
    bound = v.sqrt().mul_(threshold)
    positive = w >= 0
    return (positive & (m > bound)) | (~positive & (m < bound.neg_()))  # cheaper than torch.where on a CPU


@torch.no_grad()
def bop_step(group: dict[str, Any], state: dict[torch.Tensor, dict[str, Any]]) -> None:
    """One Bop step for the parameters of ``group`` (``lr`` is gamma, ``threshold`` tau); consumes their
    gradients (sets them to ``None``) so the optimizer it lives in leaves them alone."""
    gamma, threshold = group["lr"], group["threshold"]
    for p in group["params"]:
        if p.grad is None:
            continue
        g = p.grad
        s = state[p]
        if "bop_m" not in s:  # "step" too: torch's optimizers expect it in every parameter's state
            s["step"], s["bop_m"], s["bop_v"] = torch.tensor(0.0), torch.zeros_like(p), torch.zeros_like(p)
        s["step"] += 1
        m, v = s["bop_m"], s["bop_v"]
        m.lerp_(g, gamma)
        v.mul_(1 - gamma).addcmul_(g, g, value=gamma)
        flips = bop_flips(p, m, v, threshold)
        p[flips] = -p[flips]
        p.grad = None


class _BopGroups(torch.optim.Optimizer):
    """Runs Bop on the parameter groups marked ``bop``; the base optimizer steps the rest."""

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group.get("bop"):
                bop_step(group, self.state)
        super().step()
        return loss


class AdamBop(_BopGroups, torch.optim.Adam):
    """Adam for the real-valued parameters, Bop for the binary weights."""


class AdamaxBop(_BopGroups, torch.optim.Adamax):
    """AdaMax for the real-valued parameters, Bop for the binary weights."""


class ShiftAdaMaxBop(_BopGroups, ShiftAdaMax):
    """The paper's shift-based AdaMax for the real-valued parameters, Bop for the binary weights."""
