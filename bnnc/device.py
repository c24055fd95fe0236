"""``--device auto|cpu|cuda``: where training and evaluation run."""

from __future__ import annotations

import torch

from bnnc.errors import BnncError


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` takes CUDA when present, else the CPU; ``cuda`` without a GPU is an error."""
    spec = spec.lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise BnncError("--device cuda was asked for, but no CUDA GPU is available",
                        "use --device auto or --device cpu")
    try:
        return torch.device(spec)
    except RuntimeError:
        raise BnncError(f"unknown device {spec!r}", "use auto, cpu, cuda or cuda:N") from None
