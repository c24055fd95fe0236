"""Image files as ``--data``: a folder of class sub-folders (torchvision's ``ImageFolder``), or images listed in a
table beside them with their labels (Kaggle's ``train/`` + ``train.csv``) — read into uint8 arrays at one size.

A listing table is a CSV/TSV one of whose columns names image files under the table's folder (by relative path,
file name, or name without its suffix); its label column is the one a header names ``label``/``target``/``class``/
``y``, else the one other column, else one-hot columns (one per class, the header naming the classes)."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Container, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bnnc.data.labels import by_name
from bnnc.data.tables import LABEL_COLUMNS, is_number, parse_labels, text_rows
from bnnc.errors import DataError, first_line

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"}
)
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
TABLE_SUFFIXES = (".csv", ".tsv")
LISTING_HINT = ("a table listing images needs a column of their file names (relative to the table's folder) and a "
                "label column named 'label'")
_PROBE_ROWS = 5  # rows read to decide whether a table lists images


def class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def split_folders(folder: Path) -> tuple[Path, Path] | None:
    """``train/`` and ``val/`` (or ``test/``) when the image folder comes split."""
    train = folder / "train"
    val = next((folder / n for n in ("val", "test") if (folder / n).is_dir()), None)
    return (train, val) if train.is_dir() and val is not None else None


def class_folder_files(root: Path, names: Sequence[str]) -> list[tuple[Path, int]]:
    """(file, label) for each image under ``root/<class>/``; a class folder not in ``names`` is an error."""
    index = {name: i for i, name in enumerate(names)}
    pairs = []
    for class_dir in class_folders(root):
        if class_dir.name not in index:
            raise DataError(
                f"{class_dir}: class '{class_dir.name}' is not one of the model's classes",
                f"expected sub-folders named {', '.join(names)}",
            )
        pairs += [(p, index[class_dir.name]) for p in _images_under(class_dir)]  # in sub-folders too, as ImageFolder
    return pairs


@dataclass(frozen=True)
class EncodedImage:
    """An image file's bytes held elsewhere (a Parquet table's cell), named for messages."""

    where: str
    data: bytes

    def __str__(self) -> str:
        return self.where


def read_pixels(splits: Sequence[Sequence[Path | EncodedImage]], shape: tuple[int, ...] | None) -> list[np.ndarray]:
    """Each split's images as uint8 ``(N, H, W)`` or ``(N, 3, H, W)``, all of one mode and size: the model's
    (``shape``) when known, else greyscale if all are and the size they share."""
    image_module = _pillow()
    all_files = [p for split in splits for p in split]
    images = [_open_image(image_module, p) for p in all_files]
    mode = _image_mode(images, shape)
    size = _image_size(images, all_files, shape)
    out, start = [], 0
    for split in splits:
        chunk = images[start:start + len(split)]
        start += len(split)
        out.append(np.stack([_image_array(image_module, im, mode, size) for im in chunk]))
    return out


@dataclass(frozen=True)
class Listing:
    """Images a table lists, with their labels (class indices) and the class names when the labels were names."""

    table: Path
    files: list[Path]
    labels: np.ndarray
    class_names: tuple[str, ...]


def listing_tables(folder: Path) -> list[Path]:
    """The tables directly in ``folder`` that name images under it (a submission template's placeholder labels are
    no labels: ``*submission*`` tables are left out)."""
    tables = [t for t in sorted(folder.iterdir()) if t.suffix.lower() in TABLE_SUFFIXES and t.is_file()
              and "submission" not in t.stem.lower() and _may_name_files(_first_rows(t))]
    nearby = _Nearby(folder) if tables else None
    return [t for t in tables if (rows := _first_rows(t)) and nearby and _file_column(rows, nearby) is not None]


def has_labels(table: Path, index: dict[str, list[Path]]) -> bool:
    """Whether a table naming images has a label column (the test list of a competition has none)."""
    rows = _first_rows(table)
    return rows is not None and _columns(index, rows) is not None


def lists_images(table: Path) -> bool:
    """Whether the table ``table`` names image files in its folder (and so is read as a listing, not as features)."""
    rows = _first_rows(table)
    if rows is None or not _may_name_files(rows):  # a table of numbers: its folder's files aren't looked through
        return False
    return _file_column(rows, _Nearby(table.parent)) is not None


class _Nearby:
    """Whether an image a table's cell names is there, by looking it up — as named, or with an image's suffix, from
    the folder or one of its sub-folders (Kaggle's ``train/``) — not by walking the tree: deciding whether any CSV
    lists images (a table of class names in a big home folder, say) must stay cheap. Reading a listing indexes
    every image under the folder (:func:`image_index`)."""

    _SUFFIXES = sorted({*IMAGE_SUFFIXES, *(s.upper() for s in IMAGE_SUFFIXES)})

    def __init__(self, folder: Path) -> None:
        self.roots = [folder, *(d for d in class_folders(folder))]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str) or not key:
            return False
        named = [Path(key)] if Path(key).suffix.lower() in IMAGE_SUFFIXES else [Path(key + s) for s in self._SUFFIXES]
        return any((root / n).is_file() for root in self.roots for n in named)


def _may_name_files(rows: list[list[str]] | None) -> bool:
    """Whether some cell below the header is not a number, or is one with an image's suffix (``7.png``): the only
    cells that can name an image (see :func:`_names_image`)."""
    return rows is not None and any(not is_number(c.strip()) or Path(c.strip()).suffix.lower() in IMAGE_SUFFIXES
                                    for row in rows[1:] for c in row)


def _first_rows(table: Path) -> list[list[str]] | None:
    """The table's first rows, or None if it can't be read (reported where it is read as a table)."""
    try:
        return text_rows(table, limit=_PROBE_ROWS)
    except DataError:
        return None


def read_listing(table: Path, class_names: Sequence[str], index: dict[str, list[Path]] | None = None) -> Listing:
    """The images ``table`` lists (relative to its folder) and their labels, numbered by ``class_names`` (the
    model's) when the labels are names."""
    index = index if index is not None else image_index(table.parent)
    rows = text_rows(table)
    columns = _columns(index, rows[:_PROBE_ROWS])  # every row is resolved below, by line
    if columns is None:
        what = ("no label column (none named 'label', nor one other column, nor one-hot columns with one 1 a row)"
                if _file_column(rows[:_PROBE_ROWS], index) is not None
                else f"no column names image files in {table.parent}")
        raise DataError(f"{table}: {what}", LISTING_HINT)
    file_column, label_columns, header = columns
    body = rows[1:] if header is not None else rows
    width = len(rows[0])
    first = 2 if header is not None else 1
    files = []
    for number, row in enumerate(body, first):
        if len(row) != width:
            raise DataError(f"{table}: line {number} has {len(row)} columns, the first has {width}",
                            "every row needs the same columns")
        files.append(_resolve(row[file_column], index, table, number))
    names = [c.strip() for c in header] if header is not None else [f"column {i + 1}" for i in range(width)]
    if len(label_columns) == 1:
        column = label_columns[0]
        labels, found = parse_labels([row[column].strip() for row in body], table, names[column], class_names)
    else:
        labels, found = _one_hot(body, label_columns, names, table, first)
        if class_names:  # the model's order, which the columns' may not be
            order, found = by_name(list(found), class_names, table, "the label columns")
            labels = order[labels]
    return Listing(table, files, labels, found)


def image_index(root: Path) -> dict[str, list[Path]]:
    """Every image under ``root`` by each way a table may name it: its relative path and each tail of it
    (``train/a.png``, ``a.png``), with and without the suffix."""
    index: dict[str, list[Path]] = {}
    for path in _images_under(root):
        parts = path.relative_to(root).parts
        for i in range(len(parts)):
            tail = "/".join(parts[i:])
            for key in {tail, tail[: len(tail) - len(path.suffix)]}:
                index.setdefault(key, []).append(path)
    return index


def _images_under(root: Path) -> list[Path]:
    """The image files under ``root``, hidden folders (``.git``, ``.thumbnails``) and files left out, not walked;
    linked folders followed (datasets are often linked in), each once."""
    found, seen = [], set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder, f) for f in files if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def _columns(index: Container[str], rows: list[list[str]]) -> tuple[int, list[int], list[str] | None] | None:
    """(the file column, the label columns, the header) of a table that lists images with labels, judged by its
    first ``rows``; else None."""
    found = _file_column(rows, index)
    if found is None:
        return None
    column, has_header = found
    header = rows[0] if has_header else None
    others = [i for i in range(len(rows[0])) if i != column]
    names = [c.strip().lower() for c in header] if header is not None else []
    named = next((i for want in LABEL_COLUMNS for i in others if names and names[i] == want), None)
    if named is not None:
        return column, [named], header
    if len(others) == 1:
        return column, others, header
    if header is not None and len(others) > 1 and len(rows) > 1 and all(
            _one_hot_row(row, others) for row in rows[1:]):
        return column, others, header
    return None


def _file_column(rows: list[list[str]], index: Container[str]) -> tuple[int, bool] | None:
    """The column whose cells name images, and whether the first row is a header (its cell names none)."""
    if len(rows) < 2 or not index:
        return None
    for column in range(len(rows[0])):
        cells = [row[column].strip() for row in rows[1:] if column < len(row)]
        if cells and all(_names_image(c, index) for c in cells):
            return column, not _names_image(rows[0][column].strip(), index)
    return None


def _names_image(cell: str, index: Container[str]) -> bool:
    """Whether a cell names an image: a number only with its suffix (``7.png``), since a table of features whose ids
    happen to be the names of images (``plots/7.png``) lists no images."""
    return _key(cell) in index and (not is_number(cell) or Path(cell).suffix.lower() in IMAGE_SUFFIXES)


def _key(cell: str) -> str:
    return re.sub(r"^(\./)+", "", cell.replace("\\", "/"))


def _resolve(cell: str, index: dict[str, list[Path]], table: Path, line: int) -> Path:
    found = index.get(_key(cell.strip()), [])
    if len(found) > 1:  # the same name in train/ and test/: the table's split decides
        words = set(re.split(r"[^a-z0-9]+", table.stem.lower()))
        preferred = [p for p in found if words & {part.lower() for part in p.relative_to(table.parent).parts[:-1]}]
        found = preferred if len(preferred) == 1 else found
    if not found:
        raise DataError(f"{table}: line {line}: no image {cell.strip()!r} in {table.parent}",
                        "list each image by its file name or its path relative to the table's folder")
    if len(found) > 1:
        raise DataError(f"{table}: line {line}: {cell.strip()!r} could be {found[0]} or {found[1]}",
                        "list the images by their paths relative to the table's folder")
    return found[0]


def _one_hot_row(row: list[str], columns: list[int]) -> bool:
    values = [row[i].strip() for i in columns if i < len(row)]
    return len(values) == len(columns) and all(v in {"0", "1", "0.0", "1.0"} for v in values) and sum(
        float(v) for v in values) == 1


def _one_hot(body: list[list[str]], columns: list[int], names: list[str], table: Path,
             first: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """One-hot label columns -> class indices; the header names the classes."""
    labels = []
    for number, row in enumerate(body, first):
        if not _one_hot_row(row, columns):
            raise DataError(f"{table}: line {number}: the label columns {', '.join(names[i] for i in columns)} are "
                            "not one-hot (one 1, the rest 0)", LISTING_HINT)
        labels.append(next(k for k, i in enumerate(columns) if float(row[i]) == 1))
    return np.array(labels, dtype=np.int64), tuple(names[i] for i in columns)


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise DataError("reading a folder of images needs Pillow, which isn't installed", "pip install pillow") from exc
    return Image


def _open_image(image_module: Any, path: Path | EncodedImage) -> Any:
    try:
        with image_module.open(io.BytesIO(path.data) if isinstance(path, EncodedImage) else path) as im:
            im.load()
            return im.convert("L") if im.mode in GREY_MODES else im.convert("RGB")
    except (OSError, ValueError, SyntaxError, EOFError, image_module.DecompressionBombError) as exc:
        # Pillow raises SyntaxError ("broken PNG file") for some corrupt chunks
        raise DataError(f"{path}: can't read as an image ({first_line(exc, with_type=False)})",
                        "remove or replace the file") from exc


def _image_mode(images: Sequence[Any], shape: tuple[int, ...] | None) -> str:
    """Greyscale or RGB: from the model's channels when known, else RGB unless all are greyscale."""
    if shape is not None and len(shape) == 3 and shape[0] in {1, 3}:
        return "L" if shape[0] == 1 else "RGB"
    if shape is not None:
        return "L"
    return "L" if all(im.mode == "L" for im in images) else "RGB"


def _image_size(images: Sequence[Any], files: Sequence[Path | EncodedImage],
                shape: tuple[int, ...] | None) -> tuple[int, int]:
    """(width, height): the model's when known (images are resized to it), else all must agree."""
    if shape is not None and len(shape) == 3:
        return shape[2], shape[1]
    first = images[0].size
    for im, path in zip(images, files, strict=True):
        if im.size != first:
            raise DataError(
                f"{path}: image size {im.size[0]}x{im.size[1]} differs from {first[0]}x{first[1]} of {files[0]}",
                "pass the model's input shape, e.g. --input-shape 3,32,32, and they are resized to it",
            )
    return first


def _image_array(image_module: Any, image: Any, mode: str, size: tuple[int, int]) -> np.ndarray:
    image = image.convert(mode)
    if image.size != size:
        image = image.resize(size, image_module.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)  # (H, W) or (H, W, 3)
    return pixels.transpose(2, 0, 1) if pixels.ndim == 3 else pixels
