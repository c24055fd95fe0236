"""The names arrays are saved under: bnnc's own keys (``x_train``, ``y_train``, ``x_test``, ``y_test``, or ``x``/``y``)
and the usual others, in any case and joined by ``_``, ``-``, ``.`` or nothing (``X_train``, ``train_images``,
``testY``, ``data``/``targets``, Keras-era ``train_set_x``), and the keys class names go by."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from bnnc.errors import DataError

SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
# Other names the arrays are saved under (any case, joined by _, -, . or nothing): X_train, train_images, testY, data
SAMPLE_NAMES = ("x", "data", "images", "inputs", "features", "samples")
LABEL_NAMES = ("y", "labels", "label", "targets", "target")
TRAIN_NAMES = ("train", "training")
TEST_NAMES = ("test", "val", "valid", "validation", "eval")  # the first found is the split measured
CLASS_NAME_KEYS = ("class_names", "classes", "list_classes", "label_names")  # the first found names the classes


def renamed(arrays: dict[str, Any], path: Path) -> dict[str, Any]:
    """``arrays`` under bnnc's keys when saved under other usual names (``X_train``, ``train_labels``, ``testX``,
    ``data``/``targets``); a test split is preferred to a validation one. bnnc's own keys, when all there, win."""
    if all(k in arrays for k in SPLIT_KEYS) or {"x", "y"} <= arrays.keys():
        return arrays
    found: dict[str, list[tuple[int, str]]] = {}
    for key in arrays:
        if (known := _KNOWN_NAMES.get(_without_set(key.lower()))) is not None:
            found.setdefault(known[0], []).append((known[1], key))
    renamed = {}
    for name, candidates in found.items():
        best = min(rank for rank, _ in candidates)
        keys = sorted(key for rank, key in candidates if rank == best)
        if len(keys) > 1:
            raise DataError(f"{path}: both {keys[0]!r} and {keys[1]!r} could be '{name}'",
                            f"save one array under '{name}'")
        renamed[name] = arrays[keys[0]]
    whole = any(keys <= renamed.keys() for keys in ({"x", "y"}, {"x_train", "y_train"}, {"x_test", "y_test"}))
    return renamed if whole else arrays


def one_split(arrays: dict[str, Any]) -> dict[str, Any]:
    """A split file's arrays under ``x``/``y`` when it names them by its split alone (``x_train``/``y_train`` in the
    training file, ``test_set_x`` in the test file)."""
    if {"x", "y"} <= arrays.keys():
        return arrays
    pairs = [split for split in ("train", "test") if {f"x_{split}", f"y_{split}"} <= arrays.keys()]
    return {**arrays, "x": arrays[f"x_{pairs[0]}"], "y": arrays[f"y_{pairs[0]}"]} if len(pairs) == 1 else arrays


def _without_set(key: str) -> str:
    """``train_set_x`` as ``train_x``: Keras-era data sets say "set" between the split and the role."""
    return re.sub(r"(?<![a-z])set(?![a-z])[_.-]?", "", key).strip("_.-")


def train_only(arrays: dict[str, Any]) -> bool:
    """A training split alone (``x_train``/``y_train``, no test arrays): split like ``x``/``y``."""
    return {"x_train", "y_train"} <= arrays.keys() and not {"x_test", "y_test", "x", "y"} & arrays.keys()


def _known_names() -> dict[str, tuple[str, int]]:
    """Every accepted spelling (lower case) -> (bnnc's key, rank among the test split's names)."""
    names: dict[str, tuple[str, int]] = {}
    for role, aliases in (("x", SAMPLE_NAMES), ("y", LABEL_NAMES)):
        for alias in aliases:
            names[alias] = (role, 0)
            for sep in ("_", "-", ".", ""):
                for split in TRAIN_NAMES:
                    names[f"{alias}{sep}{split}"] = names[f"{split}{sep}{alias}"] = (f"{role}_train", 0)
                for rank, split in enumerate(TEST_NAMES):
                    names[f"{alias}{sep}{split}"] = names[f"{split}{sep}{alias}"] = (f"{role}_test", rank)
    return names


_KNOWN_NAMES = _known_names()


def file_class_names(arrays: dict[str, Any], path: Path) -> tuple[str, ...]:
    """The class names a file holds, under ``class_names`` or another usual key (``classes``, Keras-era HDF5's
    ``list_classes``)."""
    lowered = {key.lower(): key for key in arrays}
    key = next((lowered[k] for k in CLASS_NAME_KEYS if k in lowered), None)
    return class_names_of(arrays[key], path) if key is not None else ()


def class_names_of(value: Any, path: Path) -> tuple[str, ...]:
    names = value.tolist() if isinstance(value, np.ndarray) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{path}: class_names must be a list of strings")
    return tuple(names)
