"""``--data table.csv``: tabular data as a spreadsheet, pandas (``DataFrame.to_csv``) or ``numpy.savetxt`` writes
it — one sample a row, numeric feature columns and one label column."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bnnc.data.labels import by_name
from bnnc.errors import DataError, first_line

LABEL_COLUMNS = ("label", "labels", "target", "targets", "class", "y")
INDEX_COLUMNS = frozenset({"", "unnamed: 0"})  # pandas' index, written by to_csv() unless index=False
PIXEL_VALUES = 64  # a sample of at least this many whole numbers in [0, 255] is an image's pixels (Kaggle's MNIST)
_PREFIX = 1 << 20  # characters read to see a table's first rows
TABLE_HINT = "expected numbers, one sample a row, and a header naming the label column 'label' (else it is the last)"


def read_table(path: Path, class_names: Sequence[str]) -> dict[str, Any]:
    """``x`` (float32 features, one row a sample), ``y`` (class indices) and ``class_names`` from a CSV/TSV file.

    The label column is the one a header names ``label``/``target``/``class``/``y`` (any case), else the last.
    Labels are whole numbers (class indices) or names: the model's ``class_names`` when it records them, else the
    sorted names found. Features are used as they are: a table's numbers aren't pixels."""
    text = _text(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _delimiter(text)
    rows = (row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if any(c.strip() for c in row))
    head = list(itertools.islice(rows, 2))
    if not head:
        raise DataError(f"{path}: the table is empty", TABLE_HINT)
    header = head[0] if _is_header(head) else None
    width = len(head[0])
    names = [c.strip() for c in header] if header is not None else [f"column {i + 1}" for i in range(width)]
    kept = [i for i, name in enumerate(names) if not (i == 0 and header is not None and name.lower() in INDEX_COLUMNS)]
    label = next((i for want in LABEL_COLUMNS for i in kept if names[i].lower() == want), kept[-1])
    features = [i for i in kept if i != label]
    if not features:
        raise DataError(f"{path}: only a label column ({names[label]!r}), no features", TABLE_HINT)
    if header is not None and len(head) == 1:
        raise DataError(f"{path}: a header and no rows of data", TABLE_HINT)
    try:  # numpy's parser is 2-3x faster than the csv module's rows, and holds numbers instead of strings
        table = np.loadtxt(io.StringIO(text), delimiter=delimiter, skiprows=int(header is not None), ndmin=2,
                           comments=None, quotechar='"')
    except ValueError:  # names for labels, or a bad cell: the csv module's rows say which
        body = [*head[1:], *rows] if header is not None else [*head, *rows]
        cells = _cells(body, path, width, header is not None)
        x = _numbers(cells[:, features], path, [names[i] for i in features], header is not None)
        y, found = parse_labels([c.strip() for c in cells[:, label]], path, names[label], class_names)
        return {"x": pixels_or_numbers(x), "y": y, "class_names": found}
    y, found = parse_labels(table[:, label], path, names[label], class_names)
    return {"x": pixels_or_numbers(table[:, features]), "y": y, "class_names": found}


def pixels_or_numbers(x: np.ndarray) -> np.ndarray:
    """Samples of whole numbers (a table's, or an integer array's) as uint8 pixels when each has at least 64 values,
    all in [0, 255] — an image, flattened or not, as an image file's would be; else as the float32 numbers they are."""
    values = x.size // len(x) if len(x) else 0
    pixels = values >= PIXEL_VALUES and x.size and np.isfinite(x).all() and x.min() >= 0 and x.max() <= 255
    return x.astype(np.uint8) if pixels and (x == np.round(x)).all() else x.astype(np.float32)


def text_rows(path: Path, limit: int | None = None) -> list[list[str]]:
    """The table's non-empty rows as strings (the first ``limit``, read from the file's start alone), in the
    delimiter it uses."""
    text = _text(path, _PREFIX if limit is not None else None)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _delimiter(text)
    complete = text if limit is None or len(text) < _PREFIX else text[: text.rfind("\n") + 1]  # no cut-off row
    rows = (row for row in csv.reader(io.StringIO(complete), delimiter=delimiter) if any(c.strip() for c in row))
    return list(itertools.islice(rows, limit))


def _text(path: Path, size: int | None = None) -> str:
    try:
        with path.open(encoding="utf-8-sig") as f:  # -sig: Excel writes a byte-order mark
            return f.read(size if size is not None else -1)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: can't read as a text table ({first_line(exc, with_type=False)})",
                        "save it as UTF-8 CSV") from exc


def _delimiter(text: str) -> str:
    """Comma, semicolon (spreadsheets where the decimal point is a comma) or tab, whichever the file uses."""
    try:
        return csv.Sniffer().sniff(text[:65536], delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def _cells(body: list[list[str]], path: Path, width: int, header: bool) -> np.ndarray:
    for number, row in enumerate(body, 2 if header else 1):
        if len(row) != width:
            raise DataError(f"{path}: line {number} has {len(row)} columns, the first has {width}",
                            "every row needs the same columns")
    return np.array(body, dtype=object)


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_header(rows: list[list[str]]) -> bool:
    """The first row names the columns when some column is a number below it but not in it."""
    if len(rows) < 2:
        return not all(is_number(c) for c in rows[0])
    return any(not is_number(a) and is_number(b) for a, b in zip(rows[0], rows[1], strict=False))


def _numbers(cells: np.ndarray, path: Path, names: list[str], header: bool) -> np.ndarray:
    try:
        return cells.astype(np.float64)
    except ValueError as exc:
        bad = next(((r, c) for r, row in enumerate(cells) for c, cell in enumerate(row) if not is_number(cell)), None)
        if bad is None:
            raise DataError(f"{path}: can't read the features as numbers ({first_line(exc, with_type=False)})") from exc
        r, c = bad
        cell = cells[r, c]
        what = "is empty" if not cell.strip() else f"{cell!r} is not a number"
        fix = ("fill in or drop rows with missing values" if not cell.strip() else
               "encode categories as numbers, e.g. as one-hot columns, before saving the table")
        raise DataError(f"{path}: line {r + (2 if header else 1)}, column {names[c]!r}: {what}", fix) from exc


def parse_labels(values: list[str] | np.ndarray, path: Path, column: str,
            class_names: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices from whole numbers, or from names (the model's, else the sorted names found)."""
    if isinstance(values, list) and all(is_number(v) for v in values):
        values = np.array(values, dtype=np.float64)
    if isinstance(values, np.ndarray):
        fraction = values[values != np.round(values)]
        if len(fraction):
            raise DataError(f"{path}: label column {column!r} holds {fraction[0]:g}, not a class",
                            "labels are class indices (0, 1, ...) or names; bnnc binarizes classifiers")
        return values.astype(np.int64), ()
    return by_name(values, class_names, path, f"label column {column!r}")
