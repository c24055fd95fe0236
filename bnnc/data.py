"""Every ``--data`` form -> normalised (train, val) datasets + the preprocessing to record.

Accepted forms of ``spec``:

* a folder of IDX files with MNIST names (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz``);
* a ``.npz`` with ``x_train``/``y_train``/``x_test``/``y_test``, or only ``x``/``y`` (a seeded
  ``val_fraction`` is then split off), and optionally ``class_names``;
* a ``.pt``/``.pth`` dict of tensors with the same keys, read with ``torch.load(weights_only=True)``;
* a folder of images with one sub-folder per class (class names are the sorted sub-folder names),
  or ``train/`` and ``val/`` (or ``test/``) folders laid out that way; needs Pillow;
* ``pkg.module:function`` returning a ``DataSplits`` (used as it is) or ``(train, val)`` datasets of
  raw ``(x, y)`` samples (normalised here like every other form).

Raw samples are uint8 pixels or floats already in the model's pixel range. Every problem a user
can cause is a ``DataError`` naming the file and what was expected.
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import math
import os
import pickle
import re
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from bnnc.config import FUNCTION_SPEC
from bnnc.errors import DataError

FORMS_HINT = (
    "give a folder of MNIST-style IDX files, a .npz or .pt with x_train/y_train/x_test/y_test "
    "(or x/y), a folder of class sub-folders of images, or pkg.module:function"
)
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
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"}
)
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class Preprocessing:
    """How raw samples become model inputs; stored in checkpoints so data is fed as in training.

    ``apply`` multiplies uint8 data by ``pixel_scale`` (float data is taken as already in that
    range), reshapes each sample to ``input_shape`` and normalises per channel (the first axis of
    ``input_shape``): ``(x - mean[c]) / std[c]``. ``mean``/``std`` have one entry per channel, or one
    shared by all.
    """

    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    pixel_scale: float = 1 / 255

    def __post_init__(self) -> None:
        for name in ("input_shape", "mean", "std", "class_names"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.input_shape or not all(_is_int(n) and n > 0 for n in self.input_shape):
            raise DataError(f"preprocessing: input_shape must be positive integers, got {self.input_shape}")
        channels = self.input_shape[0] if len(self.input_shape) > 1 else 1
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in {1, channels} or not all(_is_finite(v) for v in values):
                raise DataError(
                    f"preprocessing: {name} must be 1 or {channels} finite numbers for input_shape "
                    f"{self.input_shape}, got {values}"
                )
        if not all(v > 0 for v in self.std):
            raise DataError(f"preprocessing: std must be positive, got {self.std}")
        if not (_is_finite(self.pixel_scale) and self.pixel_scale > 0):
            raise DataError(f"preprocessing: pixel_scale must be a positive number, got {self.pixel_scale}")
        if not all(isinstance(c, str) for c in self.class_names):
            raise DataError(f"preprocessing: class_names must be strings, got {self.class_names}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, as stored in a checkpoint."""
        return {
            "input_shape": list(self.input_shape),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "class_names": list(self.class_names),
            "pixel_scale": float(self.pixel_scale),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessing:
        """Inverse of ``to_dict``; unknown or missing keys and wrong types are a ``DataError``."""
        if not isinstance(d, Mapping):
            raise DataError(f"preprocessing: expected a dict, got {type(d).__name__}")
        known = {"input_shape", "mean", "std", "class_names", "pixel_scale"}
        missing = {"input_shape", "mean", "std"} - d.keys()
        unknown = d.keys() - known
        problems = []
        if missing:
            problems.append(f"missing keys {sorted(missing)}")
        if unknown:
            problems.append(f"unknown keys {sorted(map(str, unknown))}")
        if problems:
            raise DataError(
                f"preprocessing: {', '.join(problems)}",
                "expected input_shape, mean, std and optionally class_names, pixel_scale",
            )
        for key in ("input_shape", "mean", "std", "class_names"):
            if not isinstance(d.get(key, ()), (list, tuple)):
                raise DataError(f"preprocessing: {key} must be a list, got {type(d[key]).__name__}")
        if not all(_is_number(v) for v in (*d["mean"], *d["std"], d.get("pixel_scale", 1))):
            raise DataError("preprocessing: mean, std and pixel_scale must be numbers")
        return cls(
            input_shape=tuple(d["input_shape"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            class_names=tuple(d.get("class_names", ())),
            pixel_scale=float(d.get("pixel_scale", 1 / 255)),
        )

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, ...)`` uint8 or float -> normalised float32 ``(N, *input_shape)``."""
        if x.ndim == 0 or x.shape[1:].numel() != math.prod(self.input_shape):
            raise DataError(
                f"samples of shape {tuple(x.shape[1:])} can't be reshaped to the model's input "
                f"{self.input_shape}"
            )
        scale = self.pixel_scale if x.dtype == torch.uint8 else 1.0
        out = x.to(torch.float32).reshape(x.shape[0], *self.input_shape) * scale
        stat_shape = (-1,) + (1,) * (len(self.input_shape) - 1)  # channels first, broadcast over the rest
        mean = torch.tensor(self.mean, dtype=torch.float32).reshape(stat_shape)
        std = torch.tensor(self.std, dtype=torch.float32).reshape(stat_shape)
        return (out - mean) / std

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised inputs back to the raw uint8 pixels they were made from: ``apply``'s inverse,
        for models exported to take pixels."""
        stat = (-1,) + (1,) * (x.dim() - 2)
        mean = torch.tensor(self.mean, dtype=torch.float32).reshape(stat)
        std = torch.tensor(self.std, dtype=torch.float32).reshape(stat)
        return ((x * std + mean) / self.pixel_scale).round().clamp(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class DataSplits:
    """Normalised float32 inputs and int64 labels, ready for the model, and how they were made."""

    train: TensorDataset
    val: TensorDataset
    preprocessing: Preprocessing
    source: str


DataSpec: TypeAlias = "str | os.PathLike[str] | DataSplits"
"""What every ``data`` argument accepts: a ``--data`` form (see the module docstring) or loaded splits."""


@dataclass(frozen=True)
class _Raw:
    """Arrays as read from disk, before checks and normalisation."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: tuple[str, ...]
    where: str
    form: str


def load_data(
    spec: DataSpec,
    *,
    preprocessing: Preprocessing | None = None,
    input_shape: Sequence[int] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> DataSplits:
    """Read ``spec`` (see the module docstring for the forms) into normalised train/val splits.

    With ``preprocessing`` (the one recorded in a model) the data must fit it: reshapeable to its
    ``input_shape``, labels within its ``class_names``. Without it, one is derived from the data:
    uint8 data gets ``pixel_scale`` 1/255 and the train split's per-channel mean/std; float data
    gets ``pixel_scale`` 1, mean 0 and std 1 (left as it is). The samples take the model's
    ``input_shape`` when it is given (a plan knows it) and fits them: data shaped ``(N, C, L)``
    is then fed to a Conv1d model as it is, not as ``(N, H, W)`` images given a channel axis.
    ``val_fraction`` and ``seed`` only matter for forms with no separate test split.
    ``DataSplits`` already loaded (e.g. by ``compress``, once for all its steps) are returned as
    they are if they were normalised with ``preprocessing``.
    """
    if isinstance(spec, DataSplits):
        if preprocessing is not None and spec.preprocessing.to_dict() != preprocessing.to_dict():
            raise DataError(f"{spec.source} was normalised as {spec.preprocessing.to_dict()}, "
                            f"but the model expects {preprocessing.to_dict()}", "load the data for this model")
        return spec
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if isinstance(spec, str) and not path.exists() and FUNCTION_SPEC.match(text):
        return _from_function(text, preprocessing, val_fraction, seed, input_shape)
    raw = _read_path(path, preprocessing, val_fraction, seed)
    return _finish(raw, preprocessing, input_shape)


def sample_data_path() -> Path:
    """The bundled Fashion-MNIST sample, which lives beside the package in the repository."""
    path = Path(__file__).resolve().parent.parent / "sample_models" / "data" / "fashion-mnist-sample.npz"
    if not path.is_file():
        raise DataError(
            f"the bundled data sample is missing: {path}",
            "it ships with the source repository; install bnnc from a checkout with `pip install -e .`",
        )
    return path


# --- forms -------------------------------------------------------------------------------------


def _read_path(path: Path, pre: Preprocessing | None, val_fraction: float, seed: int) -> _Raw:
    if not path.exists():
        raise DataError(f"data not found: {path}", FORMS_HINT)
    if path.is_dir():
        idx_files = _find_idx_files(path)
        if any(idx_files.values()):
            return _read_idx_folder(path, idx_files)
        nested = next((p for p in _class_folders(path) if any(_find_idx_files(p).values())), None)
        if nested is not None:
            raise DataError(f"{path}: no IDX files here, but {nested} has some", f"pass {nested} as the data")
        if _class_folders(path) or _split_folders(path):
            return _read_image_folder(path, pre, val_fraction, seed)
        raise DataError(f"{path}: no IDX files or class sub-folders of images found", FORMS_HINT)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _split(_read_npz(path), path, "npz", val_fraction, seed)
    if suffix in {".pt", ".pth"}:
        return _split(_read_pt(path), path, "pt", val_fraction, seed)
    raise DataError(f"{path}: unsupported data file type {suffix or '(no suffix)'}", FORMS_HINT)


def _find_idx_files(folder: Path) -> dict[str, Path | None]:
    """Each split's IDX file in ``folder`` (raw or .gz), or None where absent."""
    found: dict[str, Path | None] = {}
    for key, name in IDX_NAMES.items():
        candidates = [folder / name, folder / f"{name}.gz"]
        found[key] = next((p for p in candidates if p.is_file()), None)
    return found


def _read_idx_folder(folder: Path, files: dict[str, Path | None]) -> _Raw:
    missing = [IDX_NAMES[k] for k, p in files.items() if p is None]
    if missing:
        raise DataError(f"{folder}: missing IDX files {', '.join(missing)} (raw or .gz)", FORMS_HINT)
    arrays = {key: read_idx(p) for key, p in files.items() if p is not None}
    for key, ndim in (("x_train", 3), ("y_train", 1), ("x_test", 3), ("y_test", 1)):
        if arrays[key].ndim != ndim:
            raise DataError(
                f"{files[key]}: expected a {ndim}-D IDX array ({'images' if ndim == 3 else 'labels'}), "
                f"got shape {arrays[key].shape}"
            )
    return _Raw(
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], (), str(folder), "IDX folder"
    )


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gzip-compressed or not): magic ``0 0 dtype ndim``, big-endian dims, data."""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: can't read as an IDX file ({_first_line(exc)})", "the file may be truncated or corrupted"
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
            f"{path}: can't read as a .npz archive ({_first_line(exc)})",
            "it may be truncated, or hold pickled objects; save plain arrays with numpy.savez",
        ) from exc


def _read_pt(path: Path) -> dict[str, Any]:
    from bnnc.io import archive_problem

    if (problem := archive_problem(path)) is not None:
        raise DataError(f"{path}: not a data file bnnc will unpack: {problem}", "save plain tensors with torch.save")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch's unpickler raises anything on corrupt bytes
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if isinstance(exc, pickle.UnpicklingError) and refused:
            raise DataError(
                f"{path}: holds a {refused.group(1)}, not only tensors (torch.load with weights_only=True refused it)",
                "save it with torch.save({'x_train': ..., 'y_train': ..., 'x_test': ..., 'y_test': ...}, path)",
            ) from exc
        raise DataError(f"{path}: can't read as a torch .pt file", "the file may be truncated or corrupted") from exc
    if not isinstance(obj, Mapping):
        raise DataError(f"{path}: expected a dict of tensors, got {type(obj).__name__}", FORMS_HINT)
    return {str(k): _to_numpy(v) if isinstance(v, torch.Tensor) else v for k, v in obj.items()}


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    """numpy has no bfloat16 (or other small floats): those become float32."""
    t = t.detach().cpu()
    if t.is_floating_point() and t.dtype not in {torch.float16, torch.float32, torch.float64}:
        t = t.float()
    return t.numpy()


def _split(arrays: dict[str, Any], path: Path, form: str, val_fraction: float, seed: int) -> _Raw:
    """Arrays from a keyed file -> train/val; only ``x``/``y`` are split with the seed."""
    names = _class_names(arrays.get("class_names", ()), path)
    if all(k in arrays for k in SPLIT_KEYS):
        x_train, y_train, x_test, y_test = (_as_array(arrays[k], path, k) for k in SPLIT_KEYS)
        return _Raw(x_train, y_train, x_test, y_test, names, str(path), form)
    if "x" in arrays and "y" in arrays:
        x, y = _as_array(arrays["x"], path, "x"), _as_array(arrays["y"], path, "y")
        _check_pair(x, y, path, "x", "y")
        n_val = round(len(x) * val_fraction)
        if not 0 < n_val < len(x):
            raise DataError(f"{path}: {len(x)} samples are too few to split off val_fraction {val_fraction}")
        order = np.random.default_rng(seed).permutation(len(x))
        val, train = order[:n_val], order[n_val:]
        return _Raw(x[train], y[train], x[val], y[val], names, str(path), f"{form}, val split seed {seed}")
    raise DataError(
        f"{path}: expected keys {', '.join(SPLIT_KEYS)} (or x, y), found {', '.join(sorted(arrays)) or 'none'}",
        FORMS_HINT,
    )


def _as_array(value: Any, path: Path, key: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise DataError(f"{path}: '{key}' must be an array or tensor, got {type(value).__name__}")
    return value


def _class_names(value: Any, path: Path) -> tuple[str, ...]:
    names = value.tolist() if isinstance(value, np.ndarray) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{path}: class_names must be a list of strings")
    return tuple(names)


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_folders(folder: Path) -> tuple[Path, Path] | None:
    """``train/`` and ``val/`` (or ``test/``) when the image folder comes split."""
    train = folder / "train"
    val = next((folder / n for n in ("val", "test") if (folder / n).is_dir()), None)
    return (train, val) if train.is_dir() and val is not None else None


def _read_image_folder(folder: Path, pre: Preprocessing | None, val_fraction: float, seed: int) -> _Raw:
    """Images as uint8 ``(N, H, W)`` or ``(N, 3, H, W)``; labels index the class names."""
    image_module = _pillow()
    splits = _split_folders(folder)
    roots = list(splits) if splits else [folder]
    names = pre.class_names if pre and pre.class_names else tuple(p.name for p in _class_folders(roots[0]))
    files = [_image_files(root, names) for root in roots]
    all_files = [p for split in files for p, _ in split]
    if not all_files:
        raise DataError(
            f"{folder}: no images found in its class sub-folders", f"expected {', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    images = [_open_image(image_module, p) for p in all_files]
    mode = _image_mode(images, pre)
    size = _image_size(images, all_files, pre)
    pixels = np.stack([_image_array(image_module, im, mode, size) for im in images])
    labels = np.array([label for split in files for _, label in split], dtype=np.int64)
    if splits:
        n_train = len(files[0])
        return _Raw(pixels[:n_train], labels[:n_train], pixels[n_train:], labels[n_train:], names,
                    str(folder), "image folder, train/val")
    raw = _split({"x": pixels, "y": labels}, folder, "image folder", val_fraction, seed)
    return _Raw(raw.x_train, raw.y_train, raw.x_val, raw.y_val, names, raw.where, raw.form)


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise DataError("reading a folder of images needs Pillow, which isn't installed", "pip install pillow") from exc
    return Image


def _image_files(root: Path, names: Sequence[str]) -> list[tuple[Path, int]]:
    """(file, label) for each image under ``root/<class>/``; a class folder not in ``names`` is an error."""
    index = {name: i for i, name in enumerate(names)}
    pairs = []
    for class_dir in _class_folders(root):
        if class_dir.name not in index:
            raise DataError(
                f"{class_dir}: class '{class_dir.name}' is not one of the model's classes",
                f"expected sub-folders named {', '.join(names)}",
            )
        images = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        pairs += [(p, index[class_dir.name]) for p in images]
    return pairs


def _open_image(image_module: Any, path: Path) -> Any:
    try:
        with image_module.open(path) as im:
            im.load()
            return im.convert("L") if im.mode in GREY_MODES else im.convert("RGB")
    except (OSError, ValueError, SyntaxError, EOFError, image_module.DecompressionBombError) as exc:
        # Pillow raises SyntaxError ("broken PNG file") for some corrupt chunks
        raise DataError(f"{path}: can't read as an image ({_first_line(exc)})", "remove or replace the file") from exc


def _image_mode(images: Sequence[Any], pre: Preprocessing | None) -> str:
    """Greyscale or RGB: from the model's channels when known, else RGB unless all are greyscale."""
    if pre is not None and len(pre.input_shape) == 3 and pre.input_shape[0] in {1, 3}:
        return "L" if pre.input_shape[0] == 1 else "RGB"
    if pre is not None:
        return "L"
    return "L" if all(im.mode == "L" for im in images) else "RGB"


def _image_size(images: Sequence[Any], files: Sequence[Path], pre: Preprocessing | None) -> tuple[int, int]:
    """(width, height): the model's when known (images are resized to it), else all must agree."""
    if pre is not None and len(pre.input_shape) == 3:
        return pre.input_shape[2], pre.input_shape[1]
    first = images[0].size
    for im, path in zip(images, files, strict=True):
        if im.size != first:
            raise DataError(
                f"{path}: image size {im.size[0]}x{im.size[1]} differs from {first[0]}x{first[1]} of {files[0]}",
                "resize the images to one size",
            )
    return first


def _image_array(image_module: Any, image: Any, mode: str, size: tuple[int, int]) -> np.ndarray:
    image = image.convert(mode)
    if image.size != size:
        image = image.resize(size, image_module.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)  # (H, W) or (H, W, 3)
    return pixels.transpose(2, 0, 1) if pixels.ndim == 3 else pixels


def _from_function(spec: str, pre: Preprocessing | None, val_fraction: float, seed: int,
                   input_shape: Sequence[int] | None) -> DataSplits:
    module_name, func_name = spec.split(":")
    from bnnc.io import not_user_code

    if not_user_code(module_name):  # the rule --arch follows: only the user's own code
        top = module_name.split(".")[0]
        raise DataError(f"{spec}: {top!r} defines no data loader", "name a function of your own, pkg.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module can raise anything on import
        raise DataError(
            f"{spec}: can't import module '{module_name}' ({_first_line(exc)})", "is it on PYTHONPATH?"
        ) from exc
    func = getattr(module, func_name, None)
    if not inspect.isfunction(func) or func.__module__ != module.__name__:
        raise DataError(f"{spec}: module '{module_name}' defines no function '{func_name}'",
                        "name a Python function defined in that module (not one it imports)")
    try:
        result = func()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's function can raise anything
        raise DataError(f"{spec}: the data function raised {type(exc).__name__}: {_first_line(exc)}") from None
    if isinstance(result, DataSplits):
        if pre is not None and result.preprocessing != pre:
            raise DataError(
                f"{spec}: returned preprocessing {result.preprocessing.to_dict()} differs from the model's "
                f"{pre.to_dict()}",
                "return (train, val) datasets of raw samples and bnnc normalises them the model's way",
            )
        return result
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise DataError(f"{spec}: expected (train_dataset, val_dataset) or a DataSplits, got {type(result).__name__}")
    arrays = [_materialise(ds, spec, split) for ds, split in zip(result, ("train", "val"), strict=True)]
    raw = _Raw(*arrays[0], *arrays[1], (), spec, "function")
    return _finish(raw, pre, input_shape)


def _materialise(dataset: Any, spec: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A map-style dataset of ``(x, y)`` pairs -> stacked arrays."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return _to_numpy(dataset.tensors[0]), _to_numpy(dataset.tensors[1])
    if not isinstance(dataset, Dataset) or not hasattr(dataset, "__len__"):
        raise DataError(f"{spec}: the {split} split must be a map-style torch Dataset, got {type(dataset).__name__}")
    xs, ys = [], []
    for i in range(len(dataset)):
        item = dataset[i]
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


# --- checks and normalisation ------------------------------------------------------------------


def _finish(raw: _Raw, pre: Preprocessing | None, input_shape: Sequence[int] | None = None) -> DataSplits:
    """Check the raw arrays, derive or check the preprocessing, normalise."""
    where = raw.where
    for x_key, y_key, x, y in (("x_train", "y_train", raw.x_train, raw.y_train),
                               ("x_test", "y_test", raw.x_val, raw.y_val)):
        _check_pair(x, y, where, x_key, y_key)
    x_train, x_val = _to_nchw(raw.x_train), _to_nchw(raw.x_val)
    if x_train.shape[1:] != x_val.shape[1:]:
        raise DataError(
            f"{where}: train samples {x_train.shape[1:]} and test samples {x_val.shape[1:]} differ in shape"
        )
    if pre is None:
        pre = _derive(x_train, raw.class_names, input_shape, where)
    elif raw.class_names and pre.class_names and raw.class_names != pre.class_names:
        raise DataError(
            f"{where}: class_names {list(raw.class_names)} differ from the model's {list(pre.class_names)}",
            "relabel the data in the model's class order",
        )
    n_classes = len(pre.class_names) or len(raw.class_names)
    _check_fits(x_train, pre, where)
    for y, key in ((raw.y_train, "y_train"), (raw.y_val, "y_test")):
        _check_labels(y, n_classes, where, key)
    train = TensorDataset(pre.apply(torch.from_numpy(x_train)), torch.from_numpy(raw.y_train.astype(np.int64)))
    val = TensorDataset(pre.apply(torch.from_numpy(x_val)), torch.from_numpy(raw.y_val.astype(np.int64)))
    source = f"{where} ({raw.form}; train {len(train)}, val {len(val)}, samples {pre.input_shape})"
    return DataSplits(train=train, val=val, preprocessing=pre, source=source)


def reshaped(splits: DataSplits, input_shape: Sequence[int]) -> DataSplits:
    """``splits`` with every sample reshaped to ``input_shape`` (as many values), the preprocessing
    recorded so. Per-channel statistics can't follow a reshape across channels: one shared mean/std only."""
    shape = tuple(int(n) for n in input_shape)
    pre = splits.preprocessing
    if shape == pre.input_shape:
        return splits
    if len(set(pre.mean)) > 1 or len(set(pre.std)) > 1:
        raise DataError(f"{splits.source}: samples normalised per channel can't be reshaped to the model's input "
                        f"{shape}", f"pass --input-shape {','.join(map(str, shape))} so the data is normalised "
                        "for that shape")
    pre = Preprocessing(shape, pre.mean[:1], pre.std[:1], pre.class_names, pre.pixel_scale)
    train, val = (TensorDataset(d.tensors[0].reshape(len(d), *shape), d.tensors[1]) for d in (splits.train, splits.val))
    return DataSplits(train=train, val=val, preprocessing=pre,
                      source=splits.source.replace(f"samples {splits.preprocessing.input_shape}", f"samples {shape}"))


def check_labels(splits: DataSplits, outputs: int) -> None:
    """Labels must index the model's ``outputs`` classes: anything else is a data error, not a crash in the loss."""
    for key, part in (("y_train", splits.train), ("y_test", splits.val)):
        y = part.tensors[1]
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= outputs):
            raise DataError(f"{splits.source}: '{key}' has labels from {int(y.min())} to {int(y.max())}, "
                            f"but the model has {outputs} outputs", f"give class indices in [0, {outputs})")


def _check_pair(x: np.ndarray, y: np.ndarray, where: str | Path, x_key: str, y_key: str) -> None:
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{where}: '{x_key}' has no samples (shape {x.shape})", "expected shape (N, ...) with N > 0")
    if x.ndim == 1:
        raise DataError(f"{where}: '{x_key}' has shape {x.shape}", "expected shape (N, ...): one array per sample")
    if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{where}: '{x_key}' has dtype {x.dtype}", "expected uint8 pixels or floats")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(f"{where}: '{x_key}' contains NaN or infinite values")
    if x.dtype == np.float64 and np.abs(x).max() > np.finfo(np.float32).max:  # 1e300 is inf as float32
        raise DataError(f"{where}: '{x_key}' holds values too large for float32 (largest |x|: "
                        f"{float(np.abs(x).max()):.3g})", "scale the data to a float32 range")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(
            f"{where}: '{y_key}' has shape {y.shape}", f"expected ({len(x)},): one label per sample of '{x_key}'"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: '{y_key}' has dtype {y.dtype}", "expected integer class indices")


def _to_nchw(x: np.ndarray) -> np.ndarray:
    """``(N, H, W, C)`` with C in {1, 3} -> ``(N, C, H, W)``; anything else is left as it is."""
    if x.ndim == 4 and x.shape[3] in {1, 3} and x.shape[1] not in {1, 3}:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def _check_fits(x: np.ndarray, pre: Preprocessing, where: str) -> None:
    if math.prod(x.shape[1:]) != math.prod(pre.input_shape):
        raise DataError(
            f"{where}: samples of shape {x.shape[1:]} can't be reshaped to the model's input {pre.input_shape}",
            "give data with the model's input size",
        )


def _check_labels(y: np.ndarray, n_classes: int, where: str, key: str) -> None:
    low, high = int(y.min()), int(y.max())
    if low < 0 or (n_classes and high >= n_classes):
        bound = f"[0, {n_classes})" if n_classes else "[0, ...)"
        raise DataError(
            f"{where}: '{key}' has labels from {low} to {high}", f"expected class indices in {bound}"
        )


def _derive(x_train: np.ndarray, class_names: tuple[str, ...], model_shape: Sequence[int] | None,
            where: str = "the data") -> Preprocessing:
    """Preprocessing from the train split; see ``load_data``."""
    natural = (1, *x_train.shape[1:]) if x_train.ndim == 3 else tuple(int(n) for n in x_train.shape[1:])
    if model_shape is None:
        input_shape = natural
    elif math.prod(model_shape) == math.prod(natural):
        input_shape = tuple(int(n) for n in model_shape)
    else:
        raise DataError(
            f"{where}: samples of shape {natural} ({math.prod(natural)} values) don't fit the model's input "
            f"{tuple(model_shape)} ({math.prod(model_shape)} values)",
            "give data of the model's input size, or the right --input-shape")
    channels = input_shape[0] if len(input_shape) > 1 else 1
    if x_train.dtype != np.uint8:
        return Preprocessing(input_shape, (0.0,) * channels, (1.0,) * channels, class_names, 1.0)
    pixels = torch.from_numpy(x_train).reshape(len(x_train), channels, -1).to(torch.float64) / 255
    mean = pixels.mean(dim=(0, 2))
    std = pixels.std(dim=(0, 2)).clamp_min(1e-6)  # constant data: keep it finite
    return Preprocessing(input_shape, tuple(mean.tolist()), tuple(std.tolist()), class_names, 1 / 255)


def _first_line(exc: BaseException, limit: int = 160) -> str:
    """A library's error text, short enough for a one-line message."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)
