"""Pickled arrays — CIFAR's batches, ``pickle.dump((x, y), f)``, the classic ``mnist.pkl.gz`` — read by an unpickler
that builds nothing but numpy arrays and plain containers (dicts, lists, tuples, bytes, strings, numbers): any other
global a pickle names is refused, so a tampered file is an error, not a program."""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path
from typing import Any

from bnnc.errors import DataError

_NUMPY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # bytes in a protocol-2 pickle written by Python 3 (torch's weights_only allows it too)
})


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names something other than numpy's array constructors: a class, a function."""


class ArraysOnly(pickle.Unpickler):
    """Builds numpy arrays and plain containers only: any other global a pickle names is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        raise RefusedGlobal(f"refused global {module}.{name}")


def read_pickle(path: Path) -> Any:
    """The arrays and containers a ``.pkl``/``.pickle`` file holds (gzip-compressed or not). Python 2's pickles
    (``mnist.pkl.gz``) read as their authors' ``pickle.load(f, encoding="latin1")`` reads them."""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        return ArraysOnly(io.BytesIO(data), encoding="latin1").load()
    except RefusedGlobal as exc:
        raise DataError(f"{path}: not a pickle bnnc will unpickle ({exc})",
                        "it holds more than arrays and lists (a DataFrame, a class); save the arrays themselves, "
                        "e.g. with numpy.savez") from None
    except Exception as exc:  # noqa: BLE001 - a truncated or corrupt pickle (or gzip stream) raises anything
        raise DataError(f"{path}: can't read as a pickle ({type(exc).__name__})",
                        "the file may be truncated or corrupted") from None
