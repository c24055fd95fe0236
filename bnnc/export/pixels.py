"""``--uint8-input``: the model behind its recorded preprocessing, so the export takes raw uint8 pixels."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bnnc.data import Preprocessing


class Normalize(nn.Module):
    """Raw uint8 pixels -> the model's input, exactly as :meth:`bnnc.data.Preprocessing.apply` does it."""

    def __init__(self, input_shape: tuple[int, ...], mean: tuple[float, ...], std: tuple[float, ...],
                 pixel_scale: float) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        stat_shape = (-1,) + (1,) * (len(input_shape) - 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(stat_shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(stat_shape))
        self.pixel_scale = float(pixel_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(torch.float32) * self.pixel_scale - self.mean) / self.std


class PixelModel(nn.Module):
    """``model(normalize(x))``: the model as it is exported with ``--uint8-input``."""

    def __init__(self, normalize: Normalize, model: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(x))


def pixel_model(model: nn.Module, preprocessing: dict[str, Any]) -> PixelModel:
    """``model`` behind its recorded preprocessing: takes raw uint8 pixels."""
    pre = Preprocessing.from_dict(preprocessing)
    return PixelModel(Normalize(pre.input_shape, pre.mean, pre.std, pre.pixel_scale), model).eval()
