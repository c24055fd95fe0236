"""Accuracy of a model on a labelled data set: what fine-tuning selects epochs by and sensitivity ranks layers by."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bnnc.classes import class_logits, predictions


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorDataset, device: torch.device, batch_size: int = 1024
             ) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) in eval mode."""
    model.eval()
    correct, loss, n = 0, 0.0, 0
    for x, y in DataLoader(data, batch_size=batch_size):
        x, y = x.to(device), y.to(device)
        logits = model(x)
        correct += int((predictions(logits) == y).sum())
        loss += float(F.cross_entropy(class_logits(logits), y, reduction="sum"))
        n += len(y)
    return correct / n, loss / n
