"""Raw arrays -> checked, normalised train/val splits for the model; reshaping and label checks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import TensorDataset

from bnnc.classes import classes_of
from bnnc.data.labels import class_indices
from bnnc.data.preprocessing import DataSplits, Normalisation, Preprocessing, derive
from bnnc.data.readers import Raw, check_pair
from bnnc.data.tables import pixels_or_numbers
from bnnc.errors import DataError


def finish(raw: Raw, pre: Preprocessing | None, input_shape: Sequence[int] | None = None,
           normalisation: Normalisation | None = None) -> DataSplits:
    """Check the raw arrays, derive (with ``normalisation``, if stated) or check the preprocessing, normalise."""
    where = raw.where
    raw = replace(raw, y_train=class_indices(raw.y_train), y_val=class_indices(raw.y_val))
    for x_key, y_key, x, y in (("x_train", "y_train", raw.x_train, raw.y_train),
                               ("x_test", "y_test", raw.x_val, raw.y_val)):
        check_pair(x, y, where, x_key, y_key)
    raw = replace(raw, x_train=_integers(raw.x_train), x_val=_integers(raw.x_val))
    target = pre.input_shape if pre is not None else input_shape
    x_train, x_val = (_channels_first(_to_nchw(x), target) for x in (raw.x_train, raw.x_val))
    if x_train.shape[1:] != x_val.shape[1:]:
        raise DataError(
            f"{where}: train samples {x_train.shape[1:]} and test samples {x_val.shape[1:]} differ in shape"
        )
    guessed = pre is None and normalisation is None
    if pre is None:
        pre = derive(x_train, raw.class_names, input_shape, where, normalisation)
    elif raw.class_names and pre.class_names and raw.class_names != pre.class_names:
        raise DataError(
            f"{where}: class_names {list(raw.class_names)} differ from the model's {list(pre.class_names)}",
            "relabel the data in the model's class order",
        )
    n_classes = len(pre.class_names) or len(raw.class_names)
    _check_fits(x_train, pre, where)
    for y, key in ((raw.y_train, "y_train"), (raw.y_val, "y_test")):
        _check_labels(y, n_classes, where, key)
    train = TensorDataset(pre.apply(torch.from_numpy(x_train)), torch.from_numpy(raw.y_train.astype(np.int64)))
    val = TensorDataset(pre.apply(torch.from_numpy(x_val)), torch.from_numpy(raw.y_val.astype(np.int64)))
    source = f"{where} ({raw.form}; train {len(train)}, val {len(val)}, samples {pre.input_shape})"
    return DataSplits(train=train, val=val, preprocessing=pre, source=source, guessed=guessed)


def reshaped(splits: DataSplits, input_shape: Sequence[int]) -> DataSplits:
    """``splits`` with every sample reshaped to ``input_shape`` (as many values), the preprocessing
    recorded so. Per-channel statistics can't follow a reshape across channels: one shared mean/std only."""
    shape = tuple(int(n) for n in input_shape)
    pre = splits.preprocessing
    if shape == pre.input_shape:
        return splits
    if len(set(pre.mean)) > 1 or len(set(pre.std)) > 1:
        raise DataError(f"{splits.source}: samples normalised per channel can't be reshaped to the model's input "
                        f"{shape}", f"pass --input-shape {','.join(map(str, shape))} so the data is normalised "
                        "for that shape")
    pre = Preprocessing(shape, pre.mean[:1], pre.std[:1], pre.class_names, pre.pixel_scale)
    train, val = (TensorDataset(d.tensors[0].reshape(len(d), *shape), d.tensors[1]) for d in (splits.train, splits.val))
    return DataSplits(train=train, val=val, preprocessing=pre, guessed=splits.guessed, path=splits.path,
                      source=splits.source.replace(f"samples {splits.preprocessing.input_shape}", f"samples {shape}"))


def check_labels(splits: DataSplits, outputs: int) -> None:
    """Labels must index the classes of the model's ``outputs`` (one output: classes 0 and 1): anything else is a
    data error, not a crash in the loss."""
    classes = classes_of(outputs)
    for key, part in (("y_train", splits.train), ("y_test", splits.val)):
        y = part.tensors[1]
        low, high = (int(y.min()), int(y.max())) if len(y) else (0, 0)
        if low < 0 or high >= classes:
            fix = ("labels numbered from 1 (MATLAB's, UCI's habit): save y - 1" if low >= 1 and high == classes else
                   f"give class indices in [0, {classes})")
            has = f"{outputs} outputs" if outputs > 1 else "one output (a logit: classes 0 and 1)"
            raise DataError(f"{splits.source}: '{key}' has labels from {low} to {high}, but the model has {has}", fix)


def _to_nchw(x: np.ndarray) -> np.ndarray:
    """``(N, H, W, C)`` with C in {1, 3} -> ``(N, C, H, W)``; anything else is left as it is."""
    if x.ndim == 4 and x.shape[3] in {1, 3} and x.shape[1] not in {1, 3}:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def _integers(x: np.ndarray) -> np.ndarray:
    """Samples saved as integers other than uint8 (``np.array`` of Python ints is int64): pixels or numbers, by
    :func:`pixels_or_numbers`'s rule."""
    if x.ndim and x.dtype != np.uint8 and (np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
        return pixels_or_numbers(x)
    return x


def _channels_first(x: np.ndarray, target: Sequence[int] | None) -> np.ndarray:
    """Signals saved channels-last, ``(N, L, C)`` (Keras' Conv1D layout), for a model that takes ``(C, L)``: swapped,
    not reshaped (which would mix the channels' values)."""
    if target is not None and len(target) == 2 and x.ndim == 3 and target[0] != target[1] and (
            x.shape[1:] == (target[1], target[0])):
        return np.ascontiguousarray(x.transpose(0, 2, 1))
    return x


def _check_fits(x: np.ndarray, pre: Preprocessing, where: str) -> None:
    if math.prod(x.shape[1:]) != math.prod(pre.input_shape):
        raise DataError(
            f"{where}: samples of shape {x.shape[1:]} can't be reshaped to the model's input {pre.input_shape}",
            "give data with the model's input size",
        )


def _check_labels(y: np.ndarray, n_classes: int, where: str, key: str) -> None:
    low, high = int(y.min()), int(y.max())
    if low < 0 or (n_classes and high >= n_classes):
        bound = f"[0, {n_classes})" if n_classes else "[0, ...)"
        fix = ("labels -1 and +1 (a binary classifier's): save (y + 1) // 2" if set(np.unique(y).tolist()) == {-1, 1}
               else f"expected class indices in {bound}")
        raise DataError(f"{where}: '{key}' has labels from {low} to {high}", fix)
