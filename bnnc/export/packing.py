"""One bit per binarized weight: packing on export, unpacking inside the ONNX graph.

ONNX has no 1-bit type, so a +-1 weight tensor is stored as a ``uint8`` initializer of
``ceil(n / 8)`` bytes (``np.packbits``, big-endian bit order, +1 -> 1) and unpacked by a few
integer nodes (Unsqueeze -> BitShift -> BitwiseAnd -> Reshape [-> Slice] -> Reshape -> Where).
ONNX Runtime folds these constant nodes once when the session is created, so inference runs on
plain int8 weights while the file holds 1 bit each.
"""

from __future__ import annotations

import numpy as np
import torch


def pack_signs(weight: torch.Tensor) -> np.ndarray:
    """+-1 (or any real) tensor -> packed bits, ``1`` where ``weight >= 0`` (``binarize``'s +1)."""
    bits = (weight.detach().cpu().reshape(-1) >= 0).numpy()
    return np.packbits(bits)


def unpack_signs(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack_signs` as int8 +-1 (the reference the graph must reproduce)."""
    n = int(np.prod(shape))
    bits = np.unpackbits(packed)[:n].reshape(shape)
    return np.where(bits == 1, 1, -1).astype(np.int8)
