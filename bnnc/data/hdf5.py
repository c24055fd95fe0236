"""``--data file.h5``: arrays in an HDF5 file, as Keras-era data sets ship (``train_catvnoncat.h5``: ``train_set_x``,
``train_set_y``, ``list_classes``) and ``h5py`` writes them. Needs ``h5py`` (``pip install h5py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bnnc.errors import DataError, first_line


def read_hdf5(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of numbers or strings in the file, keyed by its path with ``/`` as ``_`` (a group ``train``
    holding ``images`` gives ``train_images``); byte strings (class names) as text."""
    try:
        import h5py
    except ImportError as exc:
        raise DataError(f"{path}: reading HDF5 needs h5py, which isn't installed", "pip install h5py") from exc
    arrays: dict[str, np.ndarray] = {}

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset) and item.dtype.kind in "biufS":
            value = np.asarray(item[()])
            arrays[name.replace("/", "_")] = np.char.decode(value, "utf-8") if value.dtype.kind == "S" else value

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: can't read as an HDF5 file ({first_line(exc, with_type=False)})",
                        "it may be truncated; save arrays with h5py or numpy.savez") from exc
    return arrays
