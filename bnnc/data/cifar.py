"""CIFAR-10 and CIFAR-100 as their authors distribute them (and torchvision downloads them): the Python version's
pickled batches (``cifar-10-batches-py``, ``cifar-100-python``) and CIFAR-10's binary version
(``cifar-10-batches-bin``).

The Python batches are pickles, and unpickling can run code: they are read by :class:`bnnc.data.pickles.ArraysOnly`,
which builds nothing but dicts, lists, bytes and numpy arrays, so a tampered batch is an error, not a program."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from bnnc.data.pickles import ArraysOnly, RefusedGlobal
from bnnc.errors import DataError

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_SIDE = 32
_RECORD = 3 * _SIDE * _SIDE


def is_cifar_folder(folder: Path) -> bool:
    """Whether ``folder`` holds CIFAR-10's Python or binary batches, or CIFAR-100's Python files."""
    return ((folder / "test_batch").is_file() or (folder / "test_batch.bin").is_file()
            or ((folder / "train").is_file() and (folder / "test").is_file() and (folder / "meta").is_file()))


def read_cifar_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """``(x_train, y_train, x_test, y_test, class_names)``; images ``(N, 3, 32, 32)`` uint8, as torchvision's."""
    if (folder / "test_batch.bin").is_file():
        return _read_binary(folder)
    if (folder / "test_batch").is_file():
        train = [_unpickle(folder / name) for name in _present(folder, CIFAR10_TRAIN)]
        test = _unpickle(folder / "test_batch")
        meta = _unpickle(folder / "batches.meta") if (folder / "batches.meta").is_file() else {}
        labels, names = b"labels", meta.get(b"label_names", [])
    else:  # CIFAR-100: one training file; its 100 fine classes, as torchvision's CIFAR100 reads them
        train, test, meta = [_unpickle(folder / "train")], _unpickle(folder / "test"), _unpickle(folder / "meta")
        labels, names = b"fine_labels", meta.get(b"fine_label_names", [])
    x_train, y_train = (np.concatenate(parts) for parts in zip(*(_batch(b, labels, folder) for b in train),
                                                                strict=True))
    x_test, y_test = _batch(test, labels, folder)
    return x_train, y_train, x_test, y_test, tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def _present(folder: Path, names: tuple[str, ...]) -> list[str]:
    """The training batches there (all five, or fewer: as many as the user kept)."""
    found = [n for n in names if (folder / n).is_file()]
    if not found:
        raise DataError(f"{folder}: CIFAR test batch found but no training batches ({names[0]}, ...)",
                        "the download may be incomplete")
    return found


def _unpickle(path: Path) -> dict[Any, Any]:
    try:
        obj = ArraysOnly(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except RefusedGlobal as exc:
        raise DataError(f"{path}: not a CIFAR batch bnnc will unpickle ({exc})",
                        "it holds more than arrays and lists; use the files as CIFAR's authors distribute them") \
            from None
    except Exception as exc:  # noqa: BLE001 - a truncated or corrupt pickle raises anything
        raise DataError(f"{path}: can't read as a CIFAR batch ({type(exc).__name__})",
                        "the file may be truncated or corrupted") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: a CIFAR batch is a dict, this is a {type(obj).__name__}")
    return obj


def _batch(batch: dict[Any, Any], labels: bytes, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    data, y = batch.get(b"data"), batch.get(labels)
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != _RECORD or y is None:
        raise DataError(f"{folder}: a CIFAR batch without {_RECORD}-byte rows under 'data' and '{labels.decode()}'",
                        "the files may be corrupted")
    return data.astype(np.uint8, copy=False).reshape(-1, 3, _SIDE, _SIDE), np.asarray(y, dtype=np.int64)


def _read_binary(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """CIFAR-10's binary version: records of one label byte and 3072 pixel bytes (red, green, blue planes)."""
    parts = [_records(folder / name) for name in _present(folder, tuple(f"{n}.bin" for n in CIFAR10_TRAIN))]
    x_test, y_test = _records(folder / "test_batch.bin")
    meta = folder / "batches.meta.txt"
    names = tuple(line.strip() for line in meta.read_text().splitlines() if line.strip()) if meta.is_file() else ()
    return (np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]), x_test, y_test, names)


def _records(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.frombuffer(path.read_bytes(), np.uint8)
    if raw.size == 0 or raw.size % (_RECORD + 1):
        raise DataError(f"{path}: {raw.size} bytes is not a whole number of {_RECORD + 1}-byte CIFAR records",
                        "the file may be truncated or corrupted")
    records = raw.reshape(-1, _RECORD + 1)
    return records[:, 1:].reshape(-1, 3, _SIDE, _SIDE).copy(), records[:, 0].astype(np.int64)
