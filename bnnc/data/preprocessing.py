"""How samples are normalised for a model (:class:`Preprocessing`, recorded in its checkpoint), derived
from the training split when the model records none, and the loaded splits (:class:`DataSplits`)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import torch
from torch.utils.data import TensorDataset

from bnnc.errors import DataError


@dataclass(frozen=True)
class Preprocessing:
    """How raw samples become model inputs; stored in checkpoints so data is fed as in training.

    ``apply`` multiplies uint8 data by ``pixel_scale`` (float data is taken as already in that
    range), reshapes each sample to ``input_shape`` and normalises per channel (the first axis of
    ``input_shape``): ``(x - mean[c]) / std[c]``. ``mean``/``std`` have one entry per channel, or one
    shared by all.
    """

    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    pixel_scale: float = 1 / 255

    def __post_init__(self) -> None:
        for name in ("input_shape", "mean", "std", "class_names"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.input_shape or not all(is_int(n) and n > 0 for n in self.input_shape):
            raise DataError(f"preprocessing: input_shape must be positive integers, got {self.input_shape}")
        channels = self.input_shape[0]  # a 1-D input's: its features (a table's columns)
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in {1, channels} or not all(is_finite(v) for v in values):
                raise DataError(
                    f"preprocessing: {name} must be 1 or {channels} finite numbers for input_shape "
                    f"{self.input_shape}, got {values}"
                )
        if not all(v > 0 for v in self.std):
            raise DataError(f"preprocessing: std must be positive, got {self.std}")
        if not (is_finite(self.pixel_scale) and self.pixel_scale > 0):
            raise DataError(f"preprocessing: pixel_scale must be a positive number, got {self.pixel_scale}")
        if not all(isinstance(c, str) for c in self.class_names):
            raise DataError(f"preprocessing: class_names must be strings, got {self.class_names}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, as stored in a checkpoint."""
        return {
            "input_shape": list(self.input_shape),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "class_names": list(self.class_names),
            "pixel_scale": float(self.pixel_scale),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessing:
        """Inverse of ``to_dict``; unknown or missing keys and wrong types are a ``DataError``."""
        if not isinstance(d, Mapping):
            raise DataError(f"preprocessing: expected a dict, got {type(d).__name__}")
        known = {"input_shape", "mean", "std", "class_names", "pixel_scale"}
        missing = {"input_shape", "mean", "std"} - d.keys()
        unknown = d.keys() - known
        problems = []
        if missing:
            problems.append(f"missing keys {sorted(missing)}")
        if unknown:
            problems.append(f"unknown keys {sorted(map(str, unknown))}")
        if problems:
            raise DataError(
                f"preprocessing: {', '.join(problems)}",
                "expected input_shape, mean, std and optionally class_names, pixel_scale",
            )
        for key in ("input_shape", "mean", "std", "class_names"):
            if not isinstance(d.get(key, ()), (list, tuple)):
                raise DataError(f"preprocessing: {key} must be a list, got {type(d[key]).__name__}")
        if not all(is_number(v) for v in (*d["mean"], *d["std"], d.get("pixel_scale", 1))):
            raise DataError("preprocessing: mean, std and pixel_scale must be numbers")
        return cls(
            input_shape=tuple(d["input_shape"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            class_names=tuple(d.get("class_names", ())),
            pixel_scale=float(d.get("pixel_scale", 1 / 255)),
        )

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, ...)`` uint8 or float -> normalised float32 ``(N, *input_shape)``."""
        if x.ndim == 0 or x.shape[1:].numel() != math.prod(self.input_shape):
            raise DataError(
                f"samples of shape {tuple(x.shape[1:])} can't be reshaped to the model's input "
                f"{self.input_shape}"
            )
        scale = self.pixel_scale if x.dtype == torch.uint8 else 1.0
        out = x.to(torch.float32).reshape(x.shape[0], *self.input_shape) * scale
        stat_shape = (-1,) + (1,) * (len(self.input_shape) - 1)  # channels first, broadcast over the rest
        mean = torch.tensor(self.mean, dtype=torch.float32).reshape(stat_shape)
        std = torch.tensor(self.std, dtype=torch.float32).reshape(stat_shape)
        return (out - mean) / std

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised inputs back to the raw uint8 pixels they were made from: ``apply``'s inverse,
        for models exported to take pixels."""
        stat = (-1,) + (1,) * (x.dim() - 2)
        mean = torch.tensor(self.mean, dtype=torch.float32).reshape(stat)
        std = torch.tensor(self.std, dtype=torch.float32).reshape(stat)
        return ((x * std + mean) / self.pixel_scale).round().clamp(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class Normalisation:
    """The mean and std a model was trained with, stated by the user (``--mean``/``--std``) instead of
    derived from the data: a plain state dict records none, and statistics of other data would feed it
    inputs it never saw. In the units ``Preprocessing.apply`` scales to (uint8 pixels / 255, float data
    as it is), as torchvision's ``Normalize`` after ``ToTensor``; one value per channel (a 1-D input's: per
    feature), or one for all."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            values = tuple(getattr(self, name))
            object.__setattr__(self, name, values)
            if not values or not all(is_finite(v) for v in values):
                raise DataError(f"--{name} must be finite numbers, got {values}")
        if not all(v > 0 for v in self.std):
            raise DataError(f"--std must be positive, got {self.std}")

    def fits(self, pre: Preprocessing) -> bool:
        """Whether ``pre`` normalises as stated (one value stands for every channel)."""
        channels = max(len(pre.mean), len(self.mean))
        pairs = [(_spread(mine, channels), _spread(theirs, channels))
                 for mine, theirs in ((self.mean, pre.mean), (self.std, pre.std))]
        return all(len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a, b, strict=True))
                   for a, b in pairs)


def _spread(values: tuple[float, ...], n: int) -> tuple[float, ...]:
    return values * n if len(values) == 1 else values


@dataclass(frozen=True)
class DataSplits:
    """Normalised float32 inputs and int64 labels, ready for the model, and how they were made."""

    train: TensorDataset
    val: TensorDataset
    preprocessing: Preprocessing
    source: str
    guessed: bool = False  # the mean/std came from the data itself: neither recorded in the model nor stated
    path: str | None = None  # the file or folder read, absolute (None: a data function's, or held in memory)


DataSpec: TypeAlias = "str | os.PathLike[str] | DataSplits | tuple[Any, ...] | list[Any] | Mapping[str, Any]"
"""What every ``data`` argument accepts: a ``--data`` form (see ``bnnc.data``), loaded splits, or from Python the
objects a data function may return (``(train_dataset, val_dataset)``, ``(x, y)``, a dict of arrays)."""


def derive(x_train: np.ndarray, class_names: tuple[str, ...], model_shape: Sequence[int] | None,
           where: str = "the data", normalisation: Normalisation | None = None) -> Preprocessing:
    """Preprocessing from the train split, or with the ``normalisation`` stated; see ``load_data``."""
    natural = (1, *x_train.shape[1:]) if x_train.ndim == 3 else tuple(int(n) for n in x_train.shape[1:])
    if model_shape is None:
        input_shape = natural
    elif math.prod(model_shape) == math.prod(natural):
        input_shape = tuple(int(n) for n in model_shape)
    else:
        raise DataError(
            f"{where}: samples of shape {natural} ({math.prod(natural)} values) don't fit the model's input "
            f"{tuple(model_shape)} ({math.prod(model_shape)} values)",
            "give data of the model's input size, or the right --input-shape")
    channels = input_shape[0] if len(input_shape) > 1 else 1
    scale = 1 / 255 if x_train.dtype == np.uint8 else 1.0
    if normalisation is not None:
        # one value for all, or one a channel; a 1-D input (a table's rows) one a feature, as a StandardScaler's
        stated, unit = input_shape[0], "channel" if len(input_shape) > 1 else "feature"
        for name, values in (("mean", normalisation.mean), ("std", normalisation.std)):
            if len(values) not in {1, stated}:
                raise DataError(f"--{name} gives {len(values)} values, but the model's input {input_shape} has "
                                f"{stated} {unit}{'s' * (stated > 1)}",
                                "give one value" if stated == 1 else f"give 1 or {stated} values")
        return Preprocessing(input_shape, normalisation.mean, normalisation.std, class_names, scale)
    if x_train.dtype != np.uint8:
        return Preprocessing(input_shape, (0.0,) * channels, (1.0,) * channels, class_names, 1.0)
    pixels = torch.from_numpy(x_train).reshape(len(x_train), channels, -1).to(torch.float64) / 255
    mean = pixels.mean(dim=(0, 2))
    std = pixels.std(dim=(0, 2)).clamp_min(1e-6)  # constant data: keep it finite
    return Preprocessing(input_shape, tuple(mean.tolist()), tuple(std.tolist()), class_names, 1 / 255)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_finite(v: Any) -> bool:
    return is_number(v) and math.isfinite(v)
