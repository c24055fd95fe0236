"""``--data file.parquet``: a table in Apache Parquet, the form the Hugging Face hub stores data sets in
(``ylecun/mnist``: an ``image`` column of PNG bytes, a ``label`` column, the class names in the file's metadata), or
a table of numeric features. Needs ``pyarrow`` (``pip install pyarrow``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bnnc.data.images import EncodedImage, read_pixels
from bnnc.data.tables import LABEL_COLUMNS, parse_labels
from bnnc.errors import DataError, first_line

_LABELS = (*LABEL_COLUMNS, "fine_label", "coarse_label")  # CIFAR-100 on the hub: the fine classes, as torchvision


def read_parquet(path: Path, class_names: Sequence[str], shape: tuple[int, ...] | None) -> dict[str, Any]:
    """``x`` (an image column decoded to uint8 pixels at ``shape`` when known; else the numeric columns, or a
    column of equal-length lists, as features), ``y`` (the label column as class indices) and ``class_names`` (the
    model's, else the hub's ``ClassLabel`` names in the file's metadata, else the sorted names found)."""
    table = _table(path)
    columns = table.column_names
    label = next((c for want in _LABELS for c in columns if c.lower() == want), None)
    if label is None:
        raise DataError(f"{path}: no label column among {', '.join(columns[:8])}",
                        f"name the column of classes one of {', '.join(_LABELS[:6])}")
    features = [c for c in columns if c != label]
    images = [c for c in features if _is_image(table.schema.field(c).type)]
    if images:
        cells = table.column(images[0]).to_pylist()
        sources = [EncodedImage(f"{path} row {i}, column {images[0]!r}", _image_bytes(cell, path, i))
                   for i, cell in enumerate(cells)]
        x = read_pixels([sources], shape)[0]
    else:
        x = _features(table, features, path)
    names = tuple(class_names) or _hub_class_names(table, label)
    values = table.column(label).to_pylist()
    if any(v is None for v in values):
        raise DataError(f"{path}: label column {label!r} has empty cells", "fill in or drop those rows")
    if all(isinstance(v, str) for v in values):
        y, names = parse_labels(values, path, label, names)
    else:
        y, _ = parse_labels(np.asarray(values, dtype=np.float64), path, label, names)
    return {"x": x, "y": y, "class_names": list(names)}


def has_images(path: Path) -> bool:
    """Whether a Parquet file holds an image column (read at the model's shape), by its schema alone."""
    try:
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
    except Exception:  # noqa: BLE001 - no pyarrow, or not Parquet: said where the file is read
        return False
    return any(_is_image(field.type) for field in schema)


def _table(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError(f"{path}: reading Parquet needs pyarrow, which isn't installed", "pip install pyarrow") from exc
    try:
        return pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own errors on a corrupt file
        raise DataError(f"{path}: can't read as a Parquet table ({first_line(exc, with_type=False)})",
                        "it may be truncated or corrupted") from None


def _is_image(kind: Any) -> bool:
    """The hub's ``Image`` feature (a struct of ``bytes`` and ``path``), or a column of raw bytes."""
    import pyarrow as pa

    return (pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0) or pa.types.is_binary(kind) or \
        pa.types.is_large_binary(kind)


def _image_bytes(cell: Any, path: Path, row: int) -> bytes:
    data = cell.get("bytes") if isinstance(cell, dict) else cell
    if not isinstance(data, bytes):
        raise DataError(f"{path}: row {row} holds no image bytes", "store the images' bytes in the table")
    return data


def _features(table: Any, columns: list[str], path: Path) -> np.ndarray:
    """Numeric columns side by side, or one column of equal-length lists (a flattened image, a signal)."""
    if len(columns) == 1 and str(table.schema.field(columns[0]).type).startswith(("list", "fixed_size_list",
                                                                                    "large_list")):
        try:
            return np.asarray(table.column(columns[0]).to_pylist(), dtype=np.float64)
        except ValueError as exc:
            raise DataError(f"{path}: the lists in column {columns[0]!r} differ in length") from exc
    try:
        return np.column_stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in columns])
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: the columns {', '.join(columns[:8])} aren't all numbers",
                        "keep numeric features and one label column") from exc


def _hub_class_names(table: Any, label: str) -> tuple[str, ...]:
    """The class names a Hugging Face ``ClassLabel`` records in the file's metadata, if any."""
    meta = (table.schema.metadata or {}).get(b"huggingface")
    try:
        feature = json.loads(meta)["info"]["features"][label] if meta else {}
    except (ValueError, KeyError, TypeError):
        return ()
    names = feature.get("names") if isinstance(feature, dict) else None
    return tuple(str(n) for n in names) if isinstance(names, list) else ()
