"""Does the exported ONNX model compute what the PyTorch model computes?"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bnnc.export.runtime import ort_session, run_ort, run_reference

RTOL = 1e-4


TIE = 1e-5
"""A binarizer input this close to its threshold (relative) may round to either side."""


@dataclass(frozen=True)
class Parity:
    """ONNX outputs against torch outputs on the same inputs.

    ``max_rel_diff`` is the largest absolute difference over the largest torch output magnitude
    (a per-model scale, so logits near 0 don't blow it up); ``argmax_agreement`` the share of
    samples whose predicted class is the same. ``mismatched`` samples differ by more than
    ``rtol``; of those, ``at_ties`` had a binarizer input within ``TIE`` of its threshold in
    torch, where the last-ulp differences of a float layer (a real-valued first layer or an FP32
    convolution, which ORT sums in another order than torch) can flip a bit — and a flipped bit
    can change the prediction. The rest are unexplained: a bug. ``ok`` means none is unexplained.
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
        return self.unexplained == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def compare(onnx_out: np.ndarray, torch_out: np.ndarray, runtime: str, inputs: str, rtol: float = RTOL,
            near_tie: np.ndarray | None = None) -> Parity:
    """Parity of two output arrays of shape (N, ...); ``near_tie`` (N,) marks samples with a near-tie."""
    diff = np.abs(onnx_out.astype(np.float64) - torch_out.astype(np.float64))
    scale = max(float(np.abs(torch_out).max(initial=0.0)), 1e-12)
    if torch_out.ndim >= 2 and torch_out.shape[-1] > 1:
        agree = float((onnx_out.argmax(-1) == torch_out.argmax(-1)).mean())
    else:
        agree = 1.0
    bad = diff.reshape(len(diff), -1).max(1) > rtol * scale
    ties = int((bad & near_tie).sum()) if near_tie is not None else 0
    return Parity(runtime, inputs, len(torch_out), float(diff.max(initial=0.0)), float(diff.max(initial=0.0)) / scale,
                  agree, int(bad.sum()), ties, rtol)


@torch.no_grad()
def near_ties(model: nn.Module, x: torch.Tensor, tie: float = TIE, batch_size: int = 256) -> np.ndarray:
    """(N,) whether any binarizer input of each sample lies within ``tie`` (relative) of its threshold."""
    from bnnc.layers import InputBinarizer

    flags: list[torch.Tensor] = []

    def hook(module: InputBinarizer, args: tuple[torch.Tensor, ...]) -> None:
        v = args[0]
        gap = module.shifted(v).abs() <= tie * (v.abs() + 1)
        flags.append(gap.reshape(len(v), -1).any(1))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, InputBinarizer)]
    model = model.eval()
    out = np.zeros(len(x), dtype=bool)
    try:
        for i in range(0, len(x), batch_size):
            flags.clear()
            model(x[i:i + batch_size])
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
    expected = torch_outputs(torch_model, x)
    xs = x.numpy()
    if runtime == "onnxruntime":
        got = run_ort(ort_session(model_bytes), xs)
    elif runtime == "reference":
        got = run_reference(model_bytes, xs)
    else:
        raise ValueError(f"unknown runtime {runtime!r}")
    parity = compare(got, expected, runtime, inputs, rtol)
    if parity.mismatched:
        parity = compare(got, expected, runtime, inputs, rtol, near_ties(torch_model, x))
    return parity
