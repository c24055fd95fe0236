"""``--data pkg.module:function`` (or ``path/to/loader.py:function``): a data loader of the user's own code,
resolved only to what they named."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from bnnc.data.names import LABEL_NAMES, SAMPLE_NAMES
from bnnc.data.normalise import finish
from bnnc.data.preprocessing import DataSplits, Normalisation, Preprocessing
from bnnc.data.readers import Raw, read_returned, to_numpy
from bnnc.errors import DataError, first_line
from bnnc.usercode import bare_argv, import_module, is_file, not_user_code, split


def from_function(spec: str, pre: Preprocessing | None, input_shape: Sequence[int] | None,
                  normalisation: Normalisation | None = None, val_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    """The splits the user's function returns: used as they are (a ``DataSplits``), or normalised here. Datasets
    (or loaders) are read sample by sample; arrays as a file holding them is (``val_fraction`` and ``seed`` split
    ``(x, y)``)."""
    module_name, func_name = split(spec)
    if not_user_code(module_name):  # the rule --arch follows: only the user's own code
        top = module_name.split(".")[0]
        raise DataError(f"{spec}: {top!r} defines no data loader", "name a function of your own, pkg.module:function")
    try:
        module = import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module can raise anything on import
        fix = "check the path" if is_file(module_name) else "run bnnc from its folder, or put it on PYTHONPATH"
        reason = first_line(exc, with_type=False)
        raise DataError(f"{spec}: can't import module '{module_name}' ({reason})", fix) from exc
    func = getattr(module, func_name, None)
    if not inspect.isfunction(func) or func.__module__ != module.__name__:
        raise DataError(f"{spec}: module '{module_name}' defines no function '{func_name}'",
                        "name a Python function defined in that module (not one it imports)")
    try:
        with bare_argv(spec):
            result = func()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's function can raise anything
        raise DataError(f"{spec}: the data function raised {first_line(exc)}") from None
    if isinstance(result, DataSplits):
        if pre is not None and result.preprocessing != pre:
            raise DataError(
                f"{spec}: returned preprocessing {result.preprocessing.to_dict()} differs from the model's "
                f"{pre.to_dict()}",
                "return (train, val) datasets of raw samples and bnnc normalises them the model's way",
            )
        return result
    return from_object(result, spec, pre, input_shape, normalisation, val_fraction, seed, form="function")


def from_object(data: Any, where: str, pre: Preprocessing | None, input_shape: Sequence[int] | None,
                normalisation: Normalisation | None = None, val_fraction: float = 0.1, seed: int = 0, *,
                form: str = "in memory") -> DataSplits:
    """Data held in memory, as a data function returns it or a Python caller passes it: ``(train, val)`` datasets
    (or loaders) of raw samples, read sample by sample; arrays as a file holds them (``(x, y)`` is split with
    ``val_fraction`` and ``seed``). Normalised the model's way (``pre``), or by the data's own statistics."""
    names = pre.class_names if pre else ()
    if isinstance(data, Mapping) or (isinstance(data, (tuple, list)) and _holds_arrays(data)):
        return finish(read_returned(data, where, val_fraction, seed, names, form), pre, input_shape, normalisation)
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise DataError(f"{where}: expected (train_dataset, val_dataset), (train_loader, val_loader), arrays "
                        f"((x_train, y_train), (x_test, y_test)) or a DataSplits, got {type(data).__name__}")
    arrays = [_materialise(ds, where, split) for ds, split in zip(data, ("train", "val"), strict=True)]
    raw = Raw(*arrays[0], *arrays[1], (), where, form)
    return finish(raw, pre, input_shape, normalisation)


def _holds_arrays(items: Sequence[Any]) -> bool:
    """Whether a returned tuple is arrays (or pairs of them), not datasets."""
    flat = [a for item in items for a in (item if isinstance(item, (tuple, list)) else (item,))]
    return all(isinstance(a, (np.ndarray, torch.Tensor)) for a in flat)


def _materialise(dataset: Any, spec: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A map-style dataset of ``(x, y)`` pairs (or the ``DataLoader`` over one that a training script builds; its
    batching and order don't matter here) -> stacked arrays."""
    if isinstance(dataset, DataLoader):
        dataset = dataset.dataset
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return to_numpy(dataset.tensors[0]), to_numpy(dataset.tensors[1])
    if not isinstance(dataset, Dataset) or not hasattr(dataset, "__len__"):
        raise DataError(f"{spec}: the {split} split must be a map-style torch Dataset, got {type(dataset).__name__}")
    xs, ys = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        if isinstance(item, Mapping):  # Hugging Face's {"image": ..., "label": ...}
            item = _pair(item, spec, split, i)
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise DataError(f"{spec}: {split} sample {i} must be an (x, y) pair, got {type(item).__name__}")
        xs.append(np.asarray(item[0]))
        ys.append(np.asarray(item[1]))
    if not xs:
        return np.zeros((0,), np.uint8), np.zeros((0,), np.int64)
    try:
        return np.stack(xs), np.stack(ys)
    except ValueError as exc:
        raise DataError(f"{spec}: {split} samples differ in shape ({exc})") from exc


# Hugging Face's names first, then the names a file's arrays go by
_SAMPLE_KEYS = tuple(dict.fromkeys(("image", "img", "pixel_values", "input", *SAMPLE_NAMES)))
_LABEL_KEYS = tuple(dict.fromkeys(("label", *LABEL_NAMES, "class")))


def _pair(item: Mapping[str, Any], spec: str, split: str, i: int) -> tuple[Any, Any]:
    """A sample given as a dict (Hugging Face datasets' rows): its sample and its label, by their usual keys."""
    x = next((item[k] for k in _SAMPLE_KEYS if k in item), None)
    y = next((item[k] for k in _LABEL_KEYS if k in item), None)
    if x is None or y is None:
        raise DataError(f"{spec}: {split} sample {i} is a dict with keys {', '.join(map(str, item))}",
                        f"name its sample {_SAMPLE_KEYS[0]!r} and its label {_LABEL_KEYS[0]!r}, or return (x, y) pairs")
    return x, y
