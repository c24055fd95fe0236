"""Every ``--data`` form -> normalised (train, val) datasets + the preprocessing to record.

Accepted forms of ``spec``:

* a folder of IDX files with MNIST names (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz``);
* a ``.npz`` with ``x_train``/``y_train``/``x_test``/``y_test``, or only ``x``/``y`` (a seeded
  ``val_fraction`` is then split off), and optionally ``class_names`` (or the usual other names:
  ``X_train``, ``train_images``, ``testy``, ``data``/``targets``);
* a ``.pt``/``.pth`` dict of tensors with the same keys, read with ``torch.load(weights_only=True)``, or a
  tuple ``(x, y)``, ``(x_train, y_train, x_test, y_test)``, ``((x_train, y_train), (x_test, y_test))``;
* a ``.csv``/``.tsv`` table: numeric features, a label column of class indices or names (``tables.py``);
* an HDF5 file (``.h5``, ``hdf5.py``) of arrays under those names; a pickle of them (``.pkl``, read by
  ``pickles.py``'s unpickler of arrays and containers only); a Parquet table or a ``datasets`` ``save_to_disk``
  folder (``arrow.py``: the Hugging Face hub's image columns, or numeric features) with a label column;
* a folder of ``train`` and ``test`` (or ``val``) files of those forms, each with ``x``/``y``, or of ``.npy``
  arrays named as those keys;
* a folder of images with one sub-folder per class (class names are the sorted sub-folder names),
  or ``train/`` and ``val/`` (or ``test/``) folders laid out that way; or images listed with their labels in a
  table (``train/`` + ``train.csv``, ``images.py``); needs Pillow;
* ``pkg.module:function`` returning a ``DataSplits`` (used as it is) or ``(train, val)`` datasets of
  raw ``(x, y)`` samples (normalised here like every other form), or arrays as a file holds them;
* from Python, those objects themselves: ``(train_dataset, val_dataset)``, ``(x, y)``,
  ``((x_train, y_train), (x_test, y_test))``, a dict of arrays.

Raw samples are uint8 pixels or numbers already in the model's units (integers: see
``tables.pixels_or_numbers``). Every problem a user can cause is a ``DataError`` naming the file and what was
expected.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bnnc.data.functions import from_function, from_object
from bnnc.data.idx import read_idx
from bnnc.data.normalise import check_labels, finish, reshaped
from bnnc.data.preprocessing import DataSpec, DataSplits, Normalisation, Preprocessing
from bnnc.data.readers import FORMS_HINT, read_path, reads_images
from bnnc.errors import DataError
from bnnc.usercode import FUNCTION_SPEC

_IN_MEMORY = "the data given"  # how messages name data passed as Python objects

__all__ = ["FORMS_HINT", "DataSpec", "DataSplits", "Normalisation", "Preprocessing", "check_labels",
           "load_data", "read_idx", "reads_images", "reshaped", "sample_data_path"]


def load_data(
    spec: DataSpec,
    *,
    preprocessing: Preprocessing | None = None,
    input_shape: Sequence[int] | None = None,
    normalisation: Normalisation | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> DataSplits:
    """Read ``spec`` (see the module docstring for the forms) into normalised train/val splits.

    With ``preprocessing`` (the one recorded in a model) the data must fit it: reshapeable to its
    ``input_shape``, labels within its ``class_names``. Without it, one is derived from the data:
    uint8 data gets ``pixel_scale`` 1/255 and the train split's per-channel mean/std; float data
    gets ``pixel_scale`` 1, mean 0 and std 1 (left as it is); a stated ``normalisation`` (the
    mean/std the model was trained with) replaces the derived mean/std. The samples take the model's
    ``input_shape`` when it is given (a plan knows it) and fits them: data shaped ``(N, C, L)``
    is then fed to a Conv1d model as it is, not as ``(N, H, W)`` images given a channel axis.
    ``val_fraction`` and ``seed`` only matter for forms with no separate test split.
    ``DataSplits`` already loaded (e.g. by ``compress``, once for all its steps) are returned as
    they are if they were normalised with ``preprocessing``.
    """
    if preprocessing is not None and normalisation is not None and not normalisation.fits(preprocessing):
        raise DataError(f"the model records mean {list(preprocessing.mean)}, std {list(preprocessing.std)}; "
                        f"--mean {_listed(normalisation.mean)} --std {_listed(normalisation.std)} differ",
                        "drop --mean/--std: the recorded normalisation is the one the model was trained with")
    if isinstance(spec, DataSplits):
        if preprocessing is not None and spec.preprocessing.to_dict() != preprocessing.to_dict():
            raise DataError(f"{spec.source} was normalised as {spec.preprocessing.to_dict()}, "
                            f"but the model expects {preprocessing.to_dict()}", "load the data for this model")
        if normalisation is not None and not normalisation.fits(spec.preprocessing):
            raise DataError(f"{spec.source} was normalised with mean {list(spec.preprocessing.mean)}, std "
                            f"{list(spec.preprocessing.std)}, not the mean/std stated",
                            "load the data with that normalisation")
        return spec if preprocessing is None else replace(spec, guessed=False)  # the model records it now
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if not isinstance(spec, (str, os.PathLike)):  # held in memory: a Python caller's datasets or arrays
        return from_object(spec, _IN_MEMORY, preprocessing, input_shape, normalisation, val_fraction, seed)
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if isinstance(spec, str) and not path.exists() and FUNCTION_SPEC.match(text):
        return from_function(text, preprocessing, input_shape, normalisation, val_fraction, seed)
    raw = read_path(path, preprocessing, val_fraction, seed, input_shape)
    return replace(finish(raw, preprocessing, input_shape, normalisation), path=str(path.resolve()))


def _listed(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def sample_data_path() -> Path:
    """The bundled Fashion-MNIST sample, which lives beside the package in the repository."""
    path = Path(__file__).resolve().parents[2] / "sample_models" / "data" / "fashion-mnist-sample.npz"
    if not path.is_file():
        raise DataError(
            f"the bundled data sample is missing: {path}",
            "it ships with the source repository; install bnnc from a checkout with `pip install -e .`",
        )
    return path
