"""MNIST's IDX files (``train-images-idx3-ubyte[.gz]`` and the three others; Kaggle's ``train-images.idx3-ubyte``):
magic ``0 0 dtype ndim``, big-endian dimensions, then the data."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from bnnc.errors import DataError, first_line

IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def find_idx_files(folder: Path) -> dict[str, Path | None]:
    """Each split's IDX file in ``folder`` (raw or .gz), or None where absent."""
    found: dict[str, Path | None] = {}
    for key, name in IDX_NAMES.items():
        dotted = name.replace("-idx", ".idx")  # Kaggle's MNIST: train-images.idx3-ubyte
        candidates = [folder / n for n in (name, f"{name}.gz", dotted, f"{dotted}.gz")]
        found[key] = next((p for p in candidates if p.is_file()), None)
    return found


def read_idx_folder(folder: Path, files: dict[str, Path | None]) -> tuple[np.ndarray, ...]:
    """``(x_train, y_train, x_test, y_test)`` from the four files :func:`find_idx_files` found."""
    missing = [IDX_NAMES[k] for k, p in files.items() if p is None]
    if missing:
        raise DataError(f"{folder}: missing IDX files {', '.join(missing)} (raw or .gz)",
                        "an IDX folder holds all four, as MNIST ships them")
    arrays = {key: read_idx(p) for key, p in files.items() if p is not None}
    for key, ndim in (("x_train", 3), ("y_train", 1), ("x_test", 3), ("y_test", 1)):
        if arrays[key].ndim != ndim:
            raise DataError(
                f"{files[key]}: expected a {ndim}-D IDX array ({'images' if ndim == 3 else 'labels'}), "
                f"got shape {arrays[key].shape}"
            )
    return tuple(arrays[k] for k in ("x_train", "y_train", "x_test", "y_test"))


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gzip-compressed or not): magic ``0 0 dtype ndim``, big-endian dims, data."""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: can't read as an IDX file ({first_line(exc, with_type=False)})",
            "the file may be truncated or corrupted",
        ) from exc
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_DTYPES or data[3] == 0:
        raise DataError(
            f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})",
            "expected 0x00000803 for images or 0x00000801 for labels",
        )
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: IDX header truncated", "the file may be truncated")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{path}: IDX dims {dims} need {expected} data bytes, found {len(data) - header}",
            "the file may be truncated or corrupted",
        )
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))
