"""Does the exported ONNX model compute what the PyTorch model computes?"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bnnc.classes import predictions
from bnnc.export.runtime import ort_session, run_ort, run_reference

RTOL = 1e-4


TIE_ERRORS = 64
"""A binarizer input is a rounding tie when its exact value lies within this many times float32's
rounding error of it from the threshold (see :func:`rounding_ties`)."""

MAX_TIE_SHARE = 0.02
"""More samples than this share explained by ties fails the check too: ties are rare by nature, and
many of them mean the thresholds sit where the float layers before them can't decide."""


@dataclass(frozen=True)
class Parity:
    """ONNX outputs against torch outputs on the same inputs.

    ``max_rel_diff`` is the largest absolute difference over the largest torch output magnitude
    (a per-model scale, so logits near 0 don't blow it up); ``argmax_agreement`` the share of
    samples whose predicted class is the same. ``mismatched`` samples differ by more than
    ``rtol``; of those, ``at_ties`` had a binarizer input at a real rounding tie (see
    :func:`rounding_ties`): a float layer (a real-valued first layer, an FP32 convolution) that ORT
    sums in another order than torch can put it on either side of its threshold, and a flipped bit
    can change the prediction. The rest are unexplained: a bug. ``ok`` means none is unexplained
    and at most ``MAX_TIE_SHARE`` of the samples are ties.
    """

    runtime: str
    inputs: str
    samples: int
    max_abs_diff: float
    max_rel_diff: float
    argmax_agreement: float
    mismatched: int = 0
    at_ties: int = 0
    rtol: float = RTOL

    @property
    def unexplained(self) -> int:
        return self.mismatched - self.at_ties

    @property
    def ok(self) -> bool:
        return self.unexplained == 0 and self.at_ties <= MAX_TIE_SHARE * self.samples

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def compare(onnx_out: np.ndarray, torch_out: np.ndarray, runtime: str, inputs: str, rtol: float = RTOL,
            near_tie: np.ndarray | None = None) -> Parity:
    """Parity of two output arrays of shape (N, ...); ``near_tie`` (N,) marks samples with a near-tie."""
    diff = np.abs(onnx_out.astype(np.float64) - torch_out.astype(np.float64))
    scale = max(float(np.abs(torch_out).max(initial=0.0)), 1e-12)
    if torch_out.ndim == 2:
        agree = float((predictions(onnx_out) == predictions(torch_out)).mean())
    elif torch_out.ndim > 2 and torch_out.shape[-1] > 1:
        agree = float((onnx_out.argmax(-1) == torch_out.argmax(-1)).mean())
    else:
        agree = 1.0
    bad = diff.reshape(len(diff), -1).max(1) > rtol * scale
    ties = int((bad & near_tie).sum()) if near_tie is not None else 0
    return Parity(runtime, inputs, len(torch_out), float(diff.max(initial=0.0)), float(diff.max(initial=0.0)) / scale,
                  agree, int(bad.sum()), ties, rtol)


def _distance(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Distance of ``x`` from the step it is compared with: a binarizer's threshold (signed), or the nearest
    rounding boundary ``(k + 1/2) * scale`` of an int8 layer's input quantization (a step too; unsigned, a
    triangle wave, so that it is continuous in ``x`` and its float32 error is the error of ``x``)."""
    from bnnc.int8 import Int8Layer

    if isinstance(module, Int8Layer):
        scale = module.input_scale.to(x.dtype)
        r = x / scale - 0.5
        return (r - torch.round(r)).abs() * scale
    return module.shifted(x)  # type: ignore[operator]


@torch.no_grad()
def rounding_ties(model: nn.Module, x: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """(N,) whether some binarizer input (or int8 layer input, at its rounding steps) of each sample is a real
    float-rounding tie.

    The exact value ``d = x - beta`` is computed by a float64 copy of the model; torch's float32 value
    ``d32`` differs from it by float32's rounding error. A tie is ``|d| <= TIE_ERRORS * max(|d32 - d|,
    ulp(x))``: within a few rounding errors of the threshold, where another runtime's float32 can
    land on the other side. A value computed exactly (a ReLU's zeros, a sum of bits) has no error and
    is never a tie, however close its threshold sits.
    """
    import copy

    from bnnc.int8 import Int8Layer
    from bnnc.layers import InputBinarizer

    exact = copy.deepcopy(model).double().eval()
    model = model.eval()
    kinds = (InputBinarizer, Int8Layer)
    ours = [m for m in model.modules() if isinstance(m, kinds)]
    theirs = [m for m in exact.modules() if isinstance(m, kinds)]
    seen: list[torch.Tensor] = []
    flags: list[torch.Tensor] = []

    def keep(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen.append(_distance(module, args[0]).double())

    def compare(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        v = args[0]
        d = _distance(module, v)
        d32 = seen[len(flags)] if len(flags) < len(seen) else d
        ulp = torch.finfo(torch.float32).eps * v.abs()
        tie = d.abs() <= TIE_ERRORS * torch.maximum((d32 - d).abs(), ulp)
        flags.append(tie.reshape(len(v), -1).any(1))

    handles = [m.register_forward_pre_hook(keep) for m in ours] + [m.register_forward_pre_hook(compare) for m in theirs]
    out = np.zeros(len(x), dtype=bool)
    try:
        for i in range(0, len(x), batch_size):
            seen.clear()
            flags.clear()
            model(x[i:i + batch_size])
            exact(x[i:i + batch_size].double())
            if flags:
                out[i:i + batch_size] = torch.stack(flags).any(0).numpy()
    finally:
        for h in handles:
            h.remove()
    return out


@torch.no_grad()
def torch_outputs(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """The model's first output on ``x`` (eval mode, CPU), in batches."""
    model = model.eval()
    outs = []
    for i in range(0, len(x), batch_size):
        out = model(x[i:i + batch_size])
        outs.append((out[0] if isinstance(out, (tuple, list)) else out).float().numpy())
    return np.concatenate(outs)


def check_parity(model_bytes: bytes, torch_model: nn.Module, x: torch.Tensor, *, inputs: str,
                 runtime: str = "onnxruntime", rtol: float = RTOL) -> Parity:
    """Run ``x`` through the ONNX model (ONNX Runtime or the ONNX reference runtime) and through torch."""
    xs = x.numpy()
    if runtime == "onnxruntime":
        got = run_ort(ort_session(model_bytes), xs)
    elif runtime == "reference":
        got = run_reference(model_bytes, xs)
    else:
        raise ValueError(f"unknown runtime {runtime!r}")
    return parity_of(got, torch_model, x, inputs=inputs, runtime=runtime, rtol=rtol)


def parity_of(got: np.ndarray, torch_model: nn.Module, x: torch.Tensor, *, inputs: str, runtime: str,
              rtol: float = RTOL) -> Parity:
    """Parity of a runtime's outputs ``got`` on ``x`` with the torch model's."""
    expected = torch_outputs(torch_model, x)
    parity = compare(got, expected, runtime, inputs, rtol)
    if parity.mismatched:
        parity = compare(got, expected, runtime, inputs, rtol, rounding_ties(torch_model, x))
    return parity
