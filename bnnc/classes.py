"""How a model's outputs are read as classes: one logit a class, the largest wins — and one output alone (a binary
classifier trained with ``BCEWithLogitsLoss``) as the two classes 0 and 1, class 1 where the logit is > 0.

Every place that scores, trains on or compares outputs (the loss, accuracy, parity, the report, the C model's
returned class) reads them through these two functions, so a one-logit model is handled the same everywhere."""

from __future__ import annotations

from typing import overload

import numpy as np
import torch


def class_logits(out: torch.Tensor) -> torch.Tensor:
    """``(N, classes)`` logits for the softmax losses; one logit ``z`` becomes ``[0, z]``.

    ``softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]``, so the cross-entropy on it is the binary cross-entropy
    with logits, distillation at temperature ``T`` matches ``sigmoid(z / T)``, and its argmax is ``z > 0``."""
    return torch.cat([torch.zeros_like(out), out], 1) if out.shape[1] == 1 else out


@overload
def predictions(out: torch.Tensor) -> torch.Tensor: ...
@overload
def predictions(out: np.ndarray) -> np.ndarray: ...
def predictions(out: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """The class each row of ``(N, outputs)`` predicts: the largest logit's index; with one output, 1 where it
    is > 0 (a tie, 0, is class 0, as ``argmax([0, 0])`` is)."""
    if out.shape[1] != 1:
        return out.argmax(1)
    if isinstance(out, torch.Tensor):
        return (out[:, 0] > 0).long()
    return (out[:, 0] > 0).astype(np.int64)


def classes_of(outputs: int) -> int:
    """How many classes ``outputs`` logits tell apart: one output is two classes."""
    return max(outputs, 2)
