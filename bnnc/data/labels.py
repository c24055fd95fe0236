"""Labels as users save them -> class indices: one-hot rows, a column, whole-number floats, booleans, class names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bnnc.errors import DataError

LABEL_KEYS = ("y_train", "y_test", "y")


def class_indices(y: np.ndarray) -> np.ndarray:
    """Labels as other tools save them, as class indices where that is exact: one-hot rows (Keras'
    ``to_categorical``) -> their argmax, a column ``(N, 1)`` -> ``(N,)``, whole-number floats (``np.loadtxt``,
    pandas) and booleans -> integers. Anything else is left for ``check_pair`` to name."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2 and y.shape[1] > 1 and len(y) and np.isin(y, (0, 1)).all() and (y.sum(1) == 1).all():
        return y.argmax(1)
    if y.dtype == bool or (np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all()
                           and (not y.size or np.abs(y).max() < 2**53)):
        return y.astype(np.int64)
    return y


def by_name(values: Sequence[str], names: Sequence[str], where: str | Path,
            key: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class names -> their indices in ``names`` (the model's), else in the sorted names found (as scikit-learn's
    ``LabelEncoder`` numbers them); and the names."""
    names = tuple(names) or tuple(sorted(set(values)))
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(values) - index.keys())
    if unknown:
        raise DataError(f"{where}: {key} holds {unknown[0]!r}, not one of the classes {', '.join(names)}",
                        "give each sample one of those class names, or a class index")
    return np.array([index[v] for v in values], dtype=np.int64), names


def named_labels(arrays: dict[str, Any], names: Sequence[str],
                 where: str | Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``arrays`` with labels saved as class names (strings) as indices, numbered by ``names`` (the model's or the
    file's ``class_names``), else by the sorted names of the training labels; and the names."""
    names = tuple(names)
    for key in LABEL_KEYS:  # y_train first: its names number the test split's
        value = arrays.get(key)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            value = np.asarray(value)  # a list of names in a .pt
        if isinstance(value, np.ndarray) and value.dtype.kind in "US":
            indices, names = by_name([str(v).strip() for v in np.ravel(value)], names, where, f"'{key}'")
            arrays = arrays | {key: indices}
    return arrays, names
