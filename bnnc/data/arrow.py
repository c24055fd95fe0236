"""Apache Arrow tables, the forms the Hugging Face hub and ``datasets`` keep data sets in: Parquet files
(``ylecun/mnist``'s ``train-00000-of-00001.parquet``: an ``image`` column of PNG bytes, a ``label`` column, the class
names in the file's metadata) and ``Dataset.save_to_disk`` folders (``dataset_dict.json``, a folder a split of Arrow
stream shards, the class names in ``dataset_info.json``); or tables of numeric features. Needs ``pyarrow``
(``pip install pyarrow``)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bnnc.data.images import EncodedImage, read_pixels
from bnnc.data.names import TEST_NAMES, TRAIN_NAMES
from bnnc.data.tables import LABEL_COLUMNS, parse_labels
from bnnc.errors import DataError, first_line

SHARD = re.compile(r"^(?P<base>.+)-\d{5}-of-\d{5}$")
"""A shard's stem (``train-00001-of-00004``): the hub splits a large split into numbered files."""
_LABELS = (*LABEL_COLUMNS, "fine_label", "coarse_label")  # CIFAR-100 on the hub: the fine classes, as torchvision


def read_tables(paths: Sequence[Path], class_names: Sequence[str], shape: tuple[int, ...] | None) -> dict[str, Any]:
    """``x`` (an image column decoded to uint8 pixels at ``shape`` when known; else the numeric columns, or a
    column of equal-length lists, as features), ``y`` (the label column as class indices) and ``class_names``
    (``class_names``, the model's or a saved data set's; else the hub's ``ClassLabel`` names in the files' metadata;
    else the sorted names found) of the Parquet files or Arrow stream shards ``paths``, one table end to end."""
    import pyarrow as pa

    path = paths[0]
    table = pa.concat_tables([_table(p) for p in paths]) if len(paths) > 1 else _table(path)
    where = f"{path} (+{len(paths) - 1} shards)" if len(paths) > 1 else str(path)
    columns = table.column_names
    label = next((c for want in _LABELS for c in columns if c.lower() == want), None)
    if label is None:
        raise DataError(f"{path}: no label column among {', '.join(columns[:8])}",
                        f"name the column of classes one of {', '.join(_LABELS[:6])}")
    features = [c for c in columns if c != label]
    images = [c for c in features if _is_image(table.schema.field(c).type)]
    if images:
        cells = table.column(images[0]).to_pylist()
        sources = [EncodedImage(f"{where} row {i}, column {images[0]!r}", _image_bytes(cell, where, i))
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
    """A Parquet file, or an Arrow stream (``datasets``' ``.arrow`` shards), as a pyarrow Table."""
    kind = "an Arrow stream" if path.suffix.lower() == ".arrow" else "a Parquet table"
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError(f"{path}: reading {kind} needs pyarrow, which isn't installed", "pip install pyarrow") from exc
    try:
        if path.suffix.lower() == ".arrow":
            with pa.memory_map(str(path)) as source:
                return pa.ipc.open_stream(source).read_all()
        return pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own errors on a corrupt file
        raise DataError(f"{path}: can't read as {kind} ({first_line(exc, with_type=False)})",
                        "it may be truncated or corrupted") from None


def shard_base(path: Path) -> str:
    """The split a shard belongs to: ``train-00001-of-00004.parquet`` -> ``train``; any other file, its stem."""
    match = SHARD.match(path.stem)
    return match.group("base") if match else path.stem


def is_saved_dataset(folder: Path) -> bool:
    """Whether ``folder`` is a ``datasets`` ``save_to_disk`` folder: a DatasetDict, or one Dataset."""
    return (folder / "dataset_dict.json").is_file() or (
        (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file())


def saved_dataset(folder: Path) -> tuple[list[Path], list[Path], tuple[str, ...]]:
    """The training split's shards and the test split's (empty: none saved) of a ``save_to_disk`` folder, and the
    class names its ``dataset_info.json`` records for the label."""
    if (folder / "dataset_dict.json").is_file():
        splits = _json(folder / "dataset_dict.json").get("splits", [])
        train = next((s for s in splits if s in TRAIN_NAMES), None)
        test = next((s for want in TEST_NAMES for s in splits if s == want), None)
        if train is None:
            raise DataError(f"{folder}: a saved DatasetDict without a training split (splits: {', '.join(splits)})",
                            "save it with a 'train' split")
        parts = [folder / train] + ([folder / test] if test else [])
    else:
        parts = [folder]
    shards = [_shards(part) for part in parts]
    return shards[0], shards[1] if len(shards) > 1 else [], _info_names(parts[0])


def _shards(split: Path) -> list[Path]:
    files = [split / f["filename"] for f in _json(split / "state.json").get("_data_files", [])
             if isinstance(f, dict) and "filename" in f]
    if not files or not all(f.is_file() for f in files):
        raise DataError(f"{split}: state.json names no data files there", "save the data set again with save_to_disk")
    return files


def _info_names(split: Path) -> tuple[str, ...]:
    features = _json(split / "dataset_info.json").get("features", {}) if (split / "dataset_info.json").is_file() else {}
    label = next((features[c] for want in _LABELS for c in features if c.lower() == want), None)
    names = label.get("names") if isinstance(label, dict) else None
    return tuple(str(n) for n in names) if isinstance(names, list) else ()


def _json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: can't read as JSON ({first_line(exc, with_type=False)})") from exc
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a JSON object")
    return doc


def _is_image(kind: Any) -> bool:
    """The hub's ``Image`` feature (a struct of ``bytes`` and ``path``), or a column of raw bytes."""
    import pyarrow as pa

    return (pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0) or pa.types.is_binary(kind) or \
        pa.types.is_large_binary(kind)


def _image_bytes(cell: Any, where: str, row: int) -> bytes:
    data = cell.get("bytes") if isinstance(cell, dict) else cell
    if not isinstance(data, bytes):
        raise DataError(f"{where}: row {row} holds no image bytes", "store the images' bytes in the table")
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
