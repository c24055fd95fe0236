"""Reading the file forms of ``--data`` (IDX folders, CIFAR batches, ``.npz``, ``.pt``, ``.h5``, pickles, Parquet, CSV
tables, images) into raw arrays, each problem a ``DataError`` naming the file and what was expected."""

from __future__ import annotations

import pickle
import re
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import TensorDataset

from bnnc.data.arrow import has_images as parquet_has_images
from bnnc.data.arrow import is_saved_dataset, read_tables, saved_dataset, shard_base
from bnnc.data.cifar import is_cifar_folder, read_cifar_folder
from bnnc.data.hdf5 import read_hdf5
from bnnc.data.idx import find_idx_files, read_idx_folder
from bnnc.data.images import (
    IMAGE_SUFFIXES,
    TABLE_SUFFIXES,
    class_folder_files,
    class_folders,
    has_labels,
    image_index,
    listing_tables,
    lists_images,
    read_listing,
    read_pixels,
    split_folders,
)
from bnnc.data.labels import class_indices, named_labels
from bnnc.data.names import (
    SPLIT_KEYS,
    TEST_NAMES,
    TRAIN_NAMES,
    file_class_names,
    one_split,
    renamed,
    train_only,
)
from bnnc.data.pickles import read_pickle
from bnnc.data.preprocessing import Preprocessing
from bnnc.data.tables import read_table
from bnnc.errors import DataError, first_line
from bnnc.formats import archive_problem

FORMS_HINT = (
    "give a folder of MNIST-style IDX files or CIFAR batches, a .npz, .pt, .h5, .pkl or .parquet with "
    "x_train/y_train/x_test/y_test (or x/y), a .csv table, a folder of class sub-folders of images (or of images "
    "and a table of their labels), or pkg.module:function"
)
FILE_FORMS = {".npz": "npz", ".pt": "pt", ".pth": "pt", ".csv": "table", ".tsv": "table", ".h5": "HDF5",
              ".hdf5": "HDF5", ".pkl": "pickle", ".pickle": "pickle", ".parquet": "Parquet"}



@dataclass(frozen=True)
class Raw:
    """Arrays as read from disk, before checks and normalisation."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: tuple[str, ...]
    where: str
    form: str


def read_path(path: Path, pre: Preprocessing | None, val_fraction: float, seed: int,
              input_shape: Sequence[int] | None = None) -> Raw:
    """The raw samples at ``path``; images are read at the model's shape: the recorded one, else ``input_shape``."""
    if not path.exists():
        raise DataError(f"data not found: {path}", FORMS_HINT)
    names = pre.class_names if pre else ()
    shape = tuple(pre.input_shape) if pre is not None else tuple(input_shape) if input_shape else None
    if not path.is_dir():
        if path.suffix.lower() in TABLE_SUFFIXES and lists_images(path):
            return _read_listed(path, shape, names, val_fraction, seed)
        return _split(_read_file(path, names, shape), path, FILE_FORMS[_suffix(path)], val_fraction, seed, names)
    form = folder_form(path)
    if form == "IDX folder":
        x_train, y_train, x_test, y_test = read_idx_folder(path, find_idx_files(path))
        return Raw(x_train, y_train, x_test, y_test, (), str(path), form)
    if form == "CIFAR batches":
        x_train, y_train, x_test, y_test, cifar_names = read_cifar_folder(path)
        return Raw(x_train, y_train, x_test, y_test, cifar_names, str(path), form)
    if form == "saved Hugging Face dataset":
        return _read_saved_dataset(path, names, shape, val_fraction, seed)
    if form == "split files":
        return _read_split_files(path, cast(tuple[list[Path], list[Path]], _split_files(path)), names, shape)
    if form == "folder of .npy":
        return _split(_read_npy_folder(path), path, form, val_fraction, seed, names)
    if form == "images listed in a table":
        return _read_listed(path, shape, names, val_fraction, seed)
    if form == "image folder":
        return _read_image_folder(path, shape, names, val_fraction, seed)
    nested = next((p for p in class_folders(path) if any(find_idx_files(p).values())), None)
    if nested is not None:
        raise DataError(f"{path}: no IDX files here, but {nested} has some", f"pass {nested} as the data")
    raise DataError(f"{path}: no IDX files, CIFAR batches, train and test files, .npy arrays, class sub-folders "
                    "of images or a table listing images found", FORMS_HINT)


def folder_form(folder: Path) -> str | None:
    """Which of the folder forms ``folder`` holds (the first that fits, in this order), None for none (or no folder)."""
    if not folder.is_dir():
        return None
    if any(find_idx_files(folder).values()):
        return "IDX folder"
    if is_cifar_folder(folder):
        return "CIFAR batches"
    if is_saved_dataset(folder):
        return "saved Hugging Face dataset"
    if listing_tables(folder):
        return "images listed in a table"
    if _split_files(folder) is not None:
        return "split files"
    if any(folder.glob("*.npy")):
        return "folder of .npy"
    if (class_folders(folder) or split_folders(folder)) and not any(
            any(find_idx_files(p).values()) for p in class_folders(folder)):
        return "image folder"
    return None


def reads_images(path: Path) -> bool:
    """Whether the data at ``path`` is image files (read at the model's shape): a folder of them, or a table listing
    them."""
    if path.is_file():
        suffix = path.suffix.lower()
        return (suffix in TABLE_SUFFIXES and lists_images(path)) or (suffix == ".parquet" and parquet_has_images(path))
    return folder_form(path) in {"image folder", "images listed in a table"}


def _suffix(path: Path) -> str:
    """The suffix that says the file's form: a compressed pickle's (``mnist.pkl.gz``) is the one before ``.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    return suffixes[-2] if suffixes[-2:-1] in ([".pkl"], [".pickle"]) and suffixes[-1] == ".gz" else path.suffix.lower()


def _read_file(path: Path, class_names: Sequence[str], shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """The arrays of a ``.npz``, ``.pt``, ``.h5``, pickle, Parquet or table file, by its suffix (a Parquet table's
    images read at ``shape``, the model's, when known)."""
    suffix = _suffix(path)
    if suffix == ".npy":
        raise DataError(f"{path}: one .npy array holds no labels",
                        f"pass the folder of its .npy files (x_train.npy, y_train.npy, ...): {path.parent}")
    if suffix not in FILE_FORMS:
        raise DataError(f"{path}: unsupported data file type {suffix or '(no suffix)'}", FORMS_HINT)
    if suffix == ".npz":
        return _read_npz(path)
    if suffix in {".pt", ".pth"}:
        return _read_pt(path)
    if FILE_FORMS[suffix] == "HDF5":
        return read_hdf5(path)
    if FILE_FORMS[suffix] == "pickle":
        return _as_arrays(read_pickle(path), path)
    if FILE_FORMS[suffix] == "Parquet":
        return read_tables([path], class_names, shape)
    return read_table(path, class_names)


def _read_npy_folder(folder: Path) -> dict[str, Any]:
    """One array a ``.npy`` file, keyed by the file's stem (``x_train.npy``, ``y_train.npy``, ...)."""
    arrays = {}
    for path in sorted(folder.glob("*.npy")):
        try:
            arrays[path.stem] = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: can't read as a .npy array ({first_line(exc, with_type=False)})",
                            "it may be truncated, or hold pickled objects; save plain arrays with numpy.save") from exc
    return arrays


def _split_files(folder: Path) -> tuple[list[Path], list[Path]] | None:
    """``train.csv`` and ``test.csv`` (or ``val``, or ``.npz``/``.pt``/``.h5`` files) side by side in ``folder``; or
    the one file whose name has the word train and the one with test (``mnist_train.csv`` + ``mnist_test.csv``,
    ``train_catvnoncat.h5`` + ``test_catvnoncat.h5``) — a Parquet split may be the hub's numbered shards of one name
    (``train-00000-of-00002.parquet``, ``train-00001-of-00002.parquet``)."""
    def find(stems: Sequence[str]) -> Path | None:
        return next((folder / f"{stem}{suffix}" for stem in stems for suffix in FILE_FORMS
                     if (folder / f"{stem}{suffix}").is_file()), None)

    train, test = find(TRAIN_NAMES), find(TEST_NAMES)
    if train is not None and test is not None:
        return [train], [test]
    files = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in FILE_FORMS and p.is_file()]
    named = [[p for p in files if set(re.split(r"[^a-z0-9]+", shard_base(p).lower())) & set(words)]
             for words in (TRAIN_NAMES, TEST_NAMES)]
    one_each = all(len({(shard_base(p), p.suffix.lower()) for p in n}) == 1 for n in named)
    shards_only_parquet = all(len(n) == 1 or all(p.suffix.lower() == ".parquet" for p in n) for n in named)
    return (named[0], named[1]) if one_each and shards_only_parquet and named[0] != named[1] else None


def _read_split_files(folder: Path, files: tuple[list[Path], list[Path]], class_names: Sequence[str],
                      shape: tuple[int, ...] | None) -> Raw:
    """Each file's ``x``/``y`` as one split (a Parquet split's shards end to end); a table's class names are the
    training file's in both."""
    splits = []
    for parts in files:
        path = parts[0]
        arrays = read_tables(parts, class_names, shape) if len(parts) > 1 else _read_file(path, class_names, shape)
        arrays, class_names = named_labels(one_split(renamed(arrays, path)),
                                           class_names or file_class_names(arrays, path), path)
        if not {"x", "y"} <= arrays.keys():
            raise DataError(f"{path}: expected keys x, y (one split's samples and labels), found "
                            f"{', '.join(sorted(arrays)) or 'none'}", FORMS_HINT)
        x, y = _xy(arrays, path)
        splits.append((x, y))
    (x_train, y_train), (x_test, y_test) = splits
    form = " and ".join(f"{parts[0].name}" + (f" (+{len(parts) - 1} shards)" if len(parts) > 1 else "")
                        for parts in files)
    return Raw(x_train, y_train, x_test, y_test, tuple(class_names), str(folder), form)


def _read_saved_dataset(folder: Path, class_names: Sequence[str], shape: tuple[int, ...] | None,
                        val_fraction: float, seed: int) -> Raw:
    """A ``datasets`` ``save_to_disk`` folder: its training split, and its test (or validation) split if saved, else
    one split off the training split with the seed."""
    train, test, hub_names = saved_dataset(folder)
    names = tuple(class_names) or hub_names
    arrays = read_tables(train, names, shape)
    names = names or tuple(arrays["class_names"])
    form = "saved Hugging Face dataset"
    if not test:
        raw = _split({"x": arrays["x"], "y": arrays["y"]}, folder, form, val_fraction, seed, names)
        return Raw(raw.x_train, raw.y_train, raw.x_val, raw.y_val, names, raw.where, raw.form)
    held_out = read_tables(test, names, shape)
    return Raw(*_xy(arrays, folder), *_xy(held_out, folder), names, str(folder), f"{form}, {test[0].parent.name}")


def _read_npz(path: Path) -> dict[str, Any]:
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"{path}: can't read as a .npz archive (not a zip file)",
            "it may be truncated; save arrays with numpy.savez",
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(
            f"{path}: can't read as a .npz archive ({first_line(exc, with_type=False)})",
            "it may be truncated, or hold pickled objects; save plain arrays with numpy.savez",
        ) from exc


def _read_pt(path: Path) -> dict[str, Any]:
    if (problem := archive_problem(path)) is not None:
        raise DataError(f"{path}: not a data file bnnc will unpack: {problem}", "save plain tensors with torch.save")
    try:
        with torch.serialization.safe_globals([TensorDataset]):  # torch.save(dataset): tensors in a plain class
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch's unpickler raises anything on corrupt bytes
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if isinstance(exc, pickle.UnpicklingError) and refused:
            raise DataError(
                f"{path}: holds a {refused.group(1)}, not only tensors (torch.load with weights_only=True refused it)",
                "save it with torch.save({'x_train': ..., 'y_train': ..., 'x_test': ..., 'y_test': ...}, path)",
            ) from exc
        raise DataError(f"{path}: can't read as a torch .pt file", "the file may be truncated or corrupted") from exc
    return _as_arrays(_datasets_as_pairs(obj, path), path)


def _as_arrays(obj: Any, path: Path) -> dict[str, Any]:
    """A file's object — a dict of arrays or tensors, or the tuples users save — as a dict of arrays."""
    if isinstance(obj, (tuple, list)):
        obj = _from_sequence(obj, path)
    if not isinstance(obj, Mapping):
        raise DataError(f"{path}: expected a dict of arrays, got {type(obj).__name__}", FORMS_HINT)
    return {str(k): to_numpy(v) if isinstance(v, torch.Tensor) else v for k, v in obj.items()}


def _datasets_as_pairs(obj: Any, path: Path) -> Any:
    """``TensorDataset``s saved whole (``torch.save(train_set)``) as their ``(samples, labels)``: the file itself, in
    a tuple (``(train_set, test_set)``), or in a dict under split names (``{'train': ..., 'test': ...}``)."""
    def pair(dataset: TensorDataset) -> tuple[torch.Tensor, torch.Tensor]:
        tensors = getattr(dataset, "tensors", None)
        if not (isinstance(tensors, tuple) and len(tensors) == 2 and all(isinstance(t, torch.Tensor) for t in tensors)):
            raise DataError(f"{path}: a TensorDataset of other than (samples, labels)",
                            "save a TensorDataset(x, y), or the tensors themselves")
        return tensors[0], tensors[1]

    if isinstance(obj, TensorDataset):
        return pair(obj)
    values = obj.values() if isinstance(obj, Mapping) else obj if isinstance(obj, (tuple, list)) else ()
    if not any(isinstance(v, TensorDataset) for v in values):
        return obj
    if isinstance(obj, (tuple, list)):
        return type(obj)(pair(v) if isinstance(v, TensorDataset) else v for v in obj)
    arrays = {k: v for k, v in obj.items() if not isinstance(v, TensorDataset)}
    ranks = {**{name: ("train", 0) for name in TRAIN_NAMES}, **{name: ("test", i) for i, name in enumerate(TEST_NAMES)}}
    named = sorted((ranks.get(str(k).lower(), ("", 0)), str(k)) for k, v in obj.items() if isinstance(v, TensorDataset))
    for (split, _), key in named:
        if not split:
            raise DataError(f"{path}: a TensorDataset under {key!r}", "save the splits under 'train' and 'test'")
        arrays.setdefault(f"x_{split}", pair(obj[key])[0])
        arrays.setdefault(f"y_{split}", pair(obj[key])[1])
    return arrays


def _from_sequence(items: Sequence[Any], path: Path) -> dict[str, Any]:
    """``(x, y)``, ``(x_train, y_train, x_test, y_test)``, Keras' ``((x_train, y_train), (x_test, y_test))``, or
    ``mnist.pkl.gz``'s ``(train, validation, test)`` pairs (the test split is the one measured)."""
    if len(items) in (2, 3) and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in items):
        return dict(zip(SPLIT_KEYS, (*items[0], *items[-1]), strict=True))
    if len(items) == 4:
        return dict(zip(SPLIT_KEYS, items, strict=True))
    if len(items) == 2:
        return {"x": items[0], "y": items[1]}
    raise DataError(f"{path}: a {type(items).__name__} of {len(items)} items",
                    "save (x, y), (x_train, y_train, x_test, y_test), or a dict of tensors with those keys")


def read_returned(obj: Any, where: str, val_fraction: float, seed: int, class_names: Sequence[str],
                  form: str) -> Raw:
    """Arrays a data function returned as a file holds them: a dict with the keys of a ``.npz``, or the tuples of
    a ``.pt`` (``(x, y)``, ``(x_train, y_train, x_test, y_test)``, ``((x_train, y_train), (x_test, y_test))``)."""
    path = Path(where)
    arrays = _from_sequence(obj, path) if isinstance(obj, (tuple, list)) else obj
    if not isinstance(arrays, Mapping):
        raise DataError(f"{where}: expected arrays, got {type(obj).__name__}", FORMS_HINT)
    arrays = {str(k): to_numpy(v) if isinstance(v, torch.Tensor) else v for k, v in arrays.items()}
    return _split(arrays, path, form, val_fraction, seed, class_names)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """numpy has no bfloat16 (or other small floats): those become float32."""
    t = t.detach().cpu()
    if t.is_floating_point() and t.dtype not in {torch.float16, torch.float32, torch.float64}:
        t = t.float()
    return t.numpy()


def _split(arrays: dict[str, Any], path: Path, form: str, val_fraction: float, seed: int,
           class_names: Sequence[str] = ()) -> Raw:
    """Arrays from a keyed file -> train/val; ``x``/``y`` (or a training split alone) are split with the seed."""
    names = file_class_names(arrays, path) or tuple(class_names)
    arrays, names = named_labels(renamed(arrays, path), names, path)
    if all(k in arrays for k in SPLIT_KEYS):
        x_train, y_train, x_test, y_test = (_as_array(arrays[k], path, k) for k in SPLIT_KEYS)
        return Raw(x_train, y_train, x_test, y_test, names, str(path), form)
    if train_only(arrays):
        arrays = {**arrays, "x": arrays["x_train"], "y": arrays["y_train"]}
    if "x" in arrays and "y" in arrays:
        x, y = _xy(arrays, path)
        check_pair(x, y, path, "x", "y")
        n_val = round(len(x) * val_fraction)
        if not 0 < n_val < len(x):
            raise DataError(f"{path}: {len(x)} samples are too few to split off val_fraction {val_fraction}")
        order = np.random.default_rng(seed).permutation(len(x))
        val, train = order[:n_val], order[n_val:]
        return Raw(x[train], y[train], x[val], y[val], names, str(path), f"{form}, val split seed {seed}")
    raise DataError(
        f"{path}: expected keys {', '.join(SPLIT_KEYS)} (or x, y), found {', '.join(sorted(arrays)) or 'none'}",
        FORMS_HINT,
    )


def _xy(arrays: dict[str, Any], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The samples and class indices under ``x`` and ``y``."""
    return _as_array(arrays["x"], path, "x"), class_indices(_as_array(arrays["y"], path, "y"))


def _as_array(value: Any, path: Path, key: str) -> np.ndarray:
    if isinstance(value, (list, tuple)):  # labels saved as a list (torchvision's dataset.targets, class names)
        array = np.asarray(value)
        if array.dtype != object and (np.issubdtype(array.dtype, np.number) or array.dtype.kind in "bU"):
            return array
    if not isinstance(value, np.ndarray):
        raise DataError(f"{path}: '{key}' must be an array or tensor, got {type(value).__name__}")
    return value


def _read_image_folder(folder: Path, shape: tuple[int, ...] | None, class_names: Sequence[str], val_fraction: float,
                       seed: int) -> Raw:
    """Images as uint8 ``(N, H, W)`` or ``(N, 3, H, W)`` (resized to ``shape``, the model's input, when known);
    labels index the class names (the model's, when known)."""
    splits = split_folders(folder)
    roots = list(splits) if splits else [folder]
    names = tuple(class_names) or tuple(p.name for p in class_folders(roots[0]))
    files = [class_folder_files(root, names) for root in roots]
    if not any(files):
        raise DataError(
            f"{folder}: no images found in its class sub-folders", f"expected {', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    if len(names) == 1:
        raise DataError(f"{roots[0]}: one class sub-folder, {names[0]!r}, so every image would be labelled alike",
                        "give one sub-folder per class, or a table beside the images listing each with its label "
                        "(train.csv: file, label)")
    pixels = read_pixels([[p for p, _ in split] for split in files], shape)
    labels = [np.array([label for _, label in split], dtype=np.int64) for split in files]
    if splits:
        return Raw(pixels[0], labels[0], pixels[1], labels[1], names, str(folder), "image folder, train/val")
    raw = _split({"x": pixels[0], "y": labels[0]}, folder, "image folder", val_fraction, seed)
    return Raw(raw.x_train, raw.y_train, raw.x_val, raw.y_val, names, raw.where, raw.form)


def _read_listed(path: Path, shape: tuple[int, ...] | None, class_names: Sequence[str], val_fraction: float,
                 seed: int) -> Raw:
    """Images listed with their labels in a table (``path``), or in the tables of the folder ``path``: a training
    table and a test one when their names say so (``train.csv``, ``test.csv``), else one table, split with the seed."""
    index = image_index(path.parent if path.is_file() else path)
    train, test = (path, None) if path.is_file() else _listing_splits(path, listing_tables(path), index)
    listings = [read_listing(train, class_names, index)]
    if test is not None:
        listings.append(read_listing(test, class_names or listings[0].class_names, index))
    names = tuple(class_names) or listings[0].class_names
    pixels = read_pixels([listing.files for listing in listings], shape)
    if test is not None:
        return Raw(pixels[0], listings[0].labels, pixels[1], listings[1].labels, names, str(path),
                   f"images listed in {train.name} and {test.name}")
    raw = _split({"x": pixels[0], "y": listings[0].labels}, path, f"images listed in {train.name}", val_fraction,
                 seed)
    return Raw(raw.x_train, raw.y_train, raw.x_val, raw.y_val, names, raw.where, raw.form)


def _listing_splits(folder: Path, tables: list[Path], index: dict[str, list[Path]]) -> tuple[Path, Path | None]:
    """The training table and the test one (None: split off the training one) of the tables naming images: of those
    with labels, else the training one, whose reading says what it lacks."""
    def named(words: Sequence[str], among: list[Path]) -> list[Path]:
        return [t for t in among if set(re.split(r"[^a-z0-9]+", t.stem.lower())) & set(words)]

    tables = [t for t in tables if has_labels(t, index)] or (named(TRAIN_NAMES, tables) or tables)[:1]
    if len(tables) == 1:
        return tables[0], None
    train, test = named(TRAIN_NAMES, tables), named(TEST_NAMES, tables)
    if len(train) == 1 and len(test) <= 1:
        return train[0], test[0] if test else None
    raise DataError(f"{folder}: {len(tables)} tables list images with labels ({', '.join(t.name for t in tables)}), "
                    "and their names don't say which is for training",
                    "name the training table train.csv (and a test one test.csv), or pass one table as the data")


def check_pair(x: np.ndarray, y: np.ndarray, where: str | Path, x_key: str, y_key: str) -> None:
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{where}: '{x_key}' has no samples (shape {x.shape})", "expected shape (N, ...) with N > 0")
    if x.ndim == 1:
        raise DataError(f"{where}: '{x_key}' has shape {x.shape}", "expected shape (N, ...): one array per sample")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == bool):
        raise DataError(f"{where}: '{x_key}' has dtype {x.dtype}", "expected uint8 pixels or numbers")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(f"{where}: '{x_key}' contains NaN or infinite values")
    if x.dtype == np.float64 and np.abs(x).max() > np.finfo(np.float32).max:  # 1e300 is inf as float32
        raise DataError(f"{where}: '{x_key}' holds values too large for float32 (largest |x|: "
                        f"{float(np.abs(x).max()):.3g})", "scale the data to a float32 range")
    if y.ndim != 1 or len(y) != len(x):
        soft = y.ndim == 2 and len(y) == len(x)
        one_hot = " (rows that aren't one-hot: save one class, e.g. y.argmax(1))" if soft else ""
        raise DataError(f"{where}: '{y_key}' has shape {y.shape}",
                        f"expected ({len(x)},): one class index per sample of '{x_key}'{one_hot}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: '{y_key}' has dtype {y.dtype}", "expected integer class indices")
