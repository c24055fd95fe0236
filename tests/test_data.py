"""bnnc.data: every --data form loads and is normalised as recorded; every bad input is a DataError."""

from __future__ import annotations

import gzip
import json
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from bnnc.data import DataSplits, Normalisation, Preprocessing, load_data, read_idx
from bnnc.errors import DataError

N_TRAIN, N_TEST, SIDE = 30, 12, 6
NAMES = ("a", "b", "c")
IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Small uint8 images (N, SIDE, SIDE) and int64 labels in [0, 3)."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (N_TRAIN, SIDE, SIDE), dtype=np.uint8),
        "y_train": rng.integers(0, len(NAMES), N_TRAIN).astype(np.int64),
        "x_test": rng.integers(0, 256, (N_TEST, SIDE, SIDE), dtype=np.uint8),
        "y_test": rng.integers(0, len(NAMES), N_TEST).astype(np.int64),
    }


def idx_bytes(a: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: 0 0 0x08 ndim, big-endian dims, data."""
    return bytes([0, 0, 0x08, a.ndim]) + np.array(a.shape, ">u4").tobytes() + a.astype(np.uint8).tobytes()


def write_idx_folder(folder: Path, data: dict[str, np.ndarray], gz: bool) -> Path:
    folder.mkdir(exist_ok=True)
    for name, key in zip(IDX, ("x_train", "y_train", "x_test", "y_test"), strict=True):
        raw = idx_bytes(data[key])
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(raw) if gz else raw)
    return folder


def expect_error(call: Callable[[], object], *needles: str) -> DataError:
    """``call`` raises a one-line DataError whose text holds every needle."""
    with pytest.raises(DataError) as info:
        call()
    text = str(info.value)
    assert "\n" not in info.value.message
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    return info.value


def normalised(x: np.ndarray, pre: Preprocessing) -> torch.Tensor:
    """What the data should look like: (x * pixel_scale - mean) / std, shaped like the model input."""
    t = torch.from_numpy(x.astype(np.float64)).reshape(len(x), *pre.input_shape) * pre.pixel_scale
    return ((t - pre.mean[0]) / pre.std[0]).float()


# --- each accepted form ------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_folder_loads_and_derives_train_statistics(tmp_path: Path, gz: bool) -> None:
    data = arrays()
    splits = load_data(write_idx_folder(tmp_path / "idx", data, gz))
    pre = splits.preprocessing
    pixels = data["x_train"] / 255
    assert pre.input_shape == (1, SIDE, SIDE) and pre.pixel_scale == pytest.approx(1 / 255)
    assert pre.mean[0] == pytest.approx(pixels.mean()) and pre.std[0] == pytest.approx(pixels.std(ddof=1))
    x, y = splits.train.tensors
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    torch.testing.assert_close(x, normalised(data["x_train"], pre))
    assert y.tolist() == data["y_train"].tolist()
    assert splits.val.tensors[1].tolist() == data["y_test"].tolist()
    assert "IDX folder" in splits.source and f"train {N_TRAIN}" in splits.source


def test_read_idx_returns_the_array(tmp_path: Path) -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(a))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), a)


def test_npz_with_split_keys_keeps_class_names(tmp_path: Path) -> None:
    data = arrays()
    np.savez(tmp_path / "d.npz", **data, class_names=np.array(NAMES))
    splits = load_data(tmp_path / "d.npz")
    assert splits.preprocessing.class_names == NAMES
    assert len(splits.train) == N_TRAIN and len(splits.val) == N_TEST
    torch.testing.assert_close(splits.val.tensors[0], normalised(data["x_test"], splits.preprocessing))


def test_npz_with_x_y_is_split_by_seed(tmp_path: Path) -> None:
    data = arrays()
    x = np.concatenate([data["x_train"], data["x_test"]])
    y = np.arange(len(x)) % len(NAMES)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    first = load_data(tmp_path / "d.npz", val_fraction=0.25, seed=1)
    again = load_data(tmp_path / "d.npz", val_fraction=0.25, seed=1)
    other = load_data(tmp_path / "d.npz", val_fraction=0.25, seed=2)
    assert len(first.val) == round(len(x) * 0.25) and len(first.train) + len(first.val) == len(x)
    assert torch.equal(first.val.tensors[0], again.val.tensors[0])
    assert not torch.equal(first.val.tensors[0], other.val.tensors[0])
    rows = {tuple(r) for r in torch.cat([first.train.tensors[0], first.val.tensors[0]]).flatten(1).tolist()}
    assert len(rows) == len(x)  # a partition: nothing lost, nothing duplicated


def test_pt_dict_of_tensors(tmp_path: Path) -> None:
    data = arrays()
    torch.save({k: torch.from_numpy(v) for k, v in data.items()} | {"class_names": list(NAMES)}, tmp_path / "d.pt")
    splits = load_data(tmp_path / "d.pt")
    assert splits.preprocessing.class_names == NAMES
    assert splits.train.tensors[1].tolist() == data["y_train"].tolist()
    torch.testing.assert_close(splits.train.tensors[0], normalised(data["x_train"], splits.preprocessing))


def by_sample(splits: DataSplits) -> dict[tuple[float, ...], int]:
    """Each sample's values -> its label, over both splits: what a seeded split can't reorder."""
    x = torch.cat([splits.train.tensors[0], splits.val.tensors[0]]).flatten(1)
    y = torch.cat([splits.train.tensors[1], splits.val.tensors[1]])
    return {tuple(row): int(label) for row, label in zip(x.tolist(), y.tolist(), strict=True)}


def test_arrays_saved_under_other_usual_names(tmp_path: Path) -> None:
    """Keras' and sklearn's habits: ``X_train``, ``train_images``/``val_images``/``test_images`` (the test split is
    measured), ``trainX`` with one-hot labels, ``data``/``targets`` with float labels (np.loadtxt's)."""
    data = arrays()
    x, y, xt, yt = (data[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    np.savez(tmp_path / "a.npz", X_train=x, Y_train=y, X_test=xt, Y_test=yt)
    np.savez(tmp_path / "b.npz", train_images=x, train_labels=y, val_images=xt[:5], val_labels=yt[:5],
             test_images=xt, test_labels=yt)
    np.savez(tmp_path / "c.npz", trainX=x, trainy=np.eye(3)[y], testX=xt, testy=np.eye(3)[yt])
    for name in ("a.npz", "b.npz", "c.npz"):
        splits = load_data(tmp_path / name)
        assert splits.train.tensors[1].tolist() == y.tolist() and splits.val.tensors[1].tolist() == yt.tolist(), name
        torch.testing.assert_close(splits.val.tensors[0], normalised(xt, splits.preprocessing))
    np.savez(tmp_path / "d.npz", data=np.concatenate([x, xt]), targets=np.concatenate([y, yt]).astype(np.float32))
    np.savez(tmp_path / "e.npz", x=np.concatenate([x, xt]), y=np.concatenate([y, yt]))
    assert by_sample(load_data(tmp_path / "d.npz")) == by_sample(load_data(tmp_path / "e.npz"))
    np.savez(tmp_path / "f.npz", images=x, data=x, labels=y)
    expect_error(lambda: load_data(tmp_path / "f.npz"), "f.npz", "both 'data' and 'images' could be 'x'")
    # a training split alone is split as x/y are (the same seeded validation split)
    np.savez(tmp_path / "g.npz", X_train=np.concatenate([x, xt]), y_train=np.concatenate([y, yt]))
    g, e = load_data(tmp_path / "g.npz"), load_data(tmp_path / "e.npz")
    assert torch.equal(g.val.tensors[0], e.val.tensors[0]) and torch.equal(g.train.tensors[1], e.train.tensors[1])
    np.savez(tmp_path / "h.npz", x_train=x, y_train=y, x_test=xt)
    expect_error(lambda: load_data(tmp_path / "h.npz"), "h.npz", "expected keys")


def test_labels_saved_as_class_names(tmp_path: Path) -> None:
    """String labels (scikit-learn's habit): numbered as the model's class names, else the file's ``class_names``,
    else the sorted names of the training labels, as ``LabelEncoder`` does; the test split follows the training's."""
    data = arrays()
    named = {k: np.array(NAMES)[v] if k.startswith("y") else v for k, v in data.items()}
    np.savez(tmp_path / "names.npz", **named)
    splits = load_data(tmp_path / "names.npz")
    assert splits.preprocessing.class_names == NAMES
    assert splits.train.tensors[1].tolist() == data["y_train"].tolist()
    assert splits.val.tensors[1].tolist() == data["y_test"].tolist()
    pre = Preprocessing(input_shape=(1, SIDE, SIDE), mean=(0.5,), std=(0.5,), class_names=("c", "b", "a"))
    assert load_data(tmp_path / "names.npz", preprocessing=pre).train.tensors[1].tolist() == [
        2 - k for k in data["y_train"]]
    torch.save({"x": torch.from_numpy(data["x_train"]), "y": [NAMES[k] for k in data["y_train"]]}, tmp_path / "n.pt")
    assert sorted(set(by_sample(load_data(tmp_path / "n.pt")).values())) == [0, 1, 2]
    np.savez(tmp_path / "unknown.npz", **named | {"y_test": np.array(["a", "zebra"] * (N_TEST // 2))})
    expect_error(lambda: load_data(tmp_path / "unknown.npz"), "'y_test' holds 'zebra', not one of the classes a, b, c")


def test_integer_samples_are_pixels_or_numbers(tmp_path: Path) -> None:
    """int64 arrays (``np.array`` of Python ints): samples of at least 64 whole numbers in [0, 255] are images, as
    uint8 pixels would be; fewer values (a table's columns) or larger ones are the float numbers they are."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 8, 8), dtype=np.uint8)
    y = np.arange(40) % 3
    np.savez(tmp_path / "u8.npz", x=images, y=y)
    np.savez(tmp_path / "i64.npz", x=images.astype(np.int64), y=y)
    as_ints, as_bytes = load_data(tmp_path / "i64.npz"), load_data(tmp_path / "u8.npz")
    assert as_ints.preprocessing == as_bytes.preprocessing and by_sample(as_ints) == by_sample(as_bytes)
    table = rng.integers(0, 100, (40, 5))
    np.savez(tmp_path / "table.npz", x=table, y=y)
    splits = load_data(tmp_path / "table.npz")
    assert splits.preprocessing.pixel_scale == 1.0 and set(by_sample(splits)) == {tuple(map(float, r)) for r in table}
    wide = rng.integers(0, 1000, (40, 64))
    np.savez(tmp_path / "wide.npz", x=wide, y=y)
    assert load_data(tmp_path / "wide.npz").preprocessing.pixel_scale == 1.0


def test_pt_tuples_as_users_save_them(tmp_path: Path) -> None:
    """``torch.save((x, y))``, Keras' ``((x_train, y_train), (x_test, y_test))`` with torchvision's list of
    labels (``dataset.targets``), and labels as a column ``(N, 1)``."""
    data = arrays()
    x, y, xt, yt = (torch.from_numpy(data[k]) for k in ("x_train", "y_train", "x_test", "y_test"))
    torch.save(((x, y.tolist()), (xt, yt.reshape(-1, 1))), tmp_path / "keras.pt")
    splits = load_data(tmp_path / "keras.pt")
    assert splits.train.tensors[1].tolist() == y.tolist() and splits.val.tensors[1].tolist() == yt.tolist()
    torch.testing.assert_close(splits.train.tensors[0], normalised(data["x_train"], splits.preprocessing))
    torch.save((torch.cat([x, xt]), torch.cat([y, yt])), tmp_path / "xy.pt")
    np.savez(tmp_path / "xy.npz", x=np.concatenate([data["x_train"], data["x_test"]]),
             y=np.concatenate([data["y_train"], data["y_test"]]))
    assert by_sample(load_data(tmp_path / "xy.pt")) == by_sample(load_data(tmp_path / "xy.npz"))
    torch.save([x, y, xt], tmp_path / "three.pt")
    expect_error(lambda: load_data(tmp_path / "three.pt"), "three.pt", "a list of 3 items", "save (x, y)")



def test_hdf5_files_as_keras_era_data_sets_ship(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Coursera's ``train_catvnoncat.h5`` + ``test_catvnoncat.h5`` (``train_set_x``, ``list_classes`` as bytes), alone
    or as the folder of both; one file of groups (``train/images``); a file that isn't HDF5; no h5py."""
    h5py = pytest.importorskip("h5py")
    data = arrays()
    folder = tmp_path / "datasets"
    folder.mkdir()
    for split in ("train", "test"):
        with h5py.File(folder / f"{split}_catvnoncat.h5", "w") as f:
            f[f"{split}_set_x"], f[f"{split}_set_y"] = data[f"x_{split}"], data[f"y_{split}"]
            f["list_classes"] = np.array([n.encode() for n in NAMES])
    with h5py.File(tmp_path / "groups.h5", "w") as f:
        for split in ("train", "test"):
            f[f"{split}/images"], f[f"{split}/labels"] = data[f"x_{split}"], data[f"y_{split}"]
    np.savez(tmp_path / "d.npz", **data)
    expected = load_data(tmp_path / "d.npz")
    for given in (folder, tmp_path / "groups.h5"):
        splits = load_data(given)
        for mine, theirs in ((splits.train, expected.train), (splits.val, expected.val)):
            assert all(torch.equal(a, b) for a, b in zip(mine.tensors, theirs.tensors, strict=True)), given
    assert load_data(folder).preprocessing.class_names == NAMES
    alone = load_data(folder / "train_catvnoncat.h5", val_fraction=0.2)  # a training split alone: split
    assert len(alone.train) + len(alone.val) == N_TRAIN and alone.preprocessing.class_names == NAMES
    (tmp_path / "junk.h5").write_bytes(RANDOM_BYTES)
    expect_error(lambda: load_data(tmp_path / "junk.h5"), "junk.h5: can't read as an HDF5 file")
    monkeypatch.setitem(sys.modules, "h5py", None)
    expect_error(lambda: load_data(tmp_path / "groups.h5"), "needs h5py", "pip install h5py")


def _hub_parquet(path: Path, x: np.ndarray, y: np.ndarray, names: Sequence[str]) -> None:
    """A Parquet file as the Hugging Face hub stores an image data set: PNG bytes in an Image struct, the
    ClassLabel's names in the schema's metadata."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    cells = []
    for pixels in x:
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "PNG")
        cells.append({"bytes": buf.getvalue(), "path": None})
    image = pa.array(cells, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    meta = {"info": {"features": {"image": {"_type": "Image"}, "label": {"names": list(names), "_type": "ClassLabel"}}}}
    table = pa.table({"image": image, "label": pa.array(y)})
    pq.write_table(table.replace_schema_metadata({b"huggingface": json.dumps(meta).encode()}), path)


def test_parquet_as_the_hugging_face_hub_stores_data_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub's layout (``train-00000-of-00001.parquet`` + ``test-...``, PNG bytes, names in the metadata), a single
    file (split with the seed), a table of numeric features with class names, a column of lists; the errors."""
    pytest.importorskip("pyarrow")
    pytest.importorskip("PIL")
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = arrays()
    hub = tmp_path / "mnist"
    hub.mkdir()
    for split in ("train", "test"):
        _hub_parquet(hub / f"{split}-00000-of-00001.parquet", data[f"x_{split}"], data[f"y_{split}"], NAMES)
    np.savez(tmp_path / "d.npz", **data)
    expected = load_data(tmp_path / "d.npz")
    splits = load_data(hub)
    for mine, theirs in ((splits.train, expected.train), (splits.val, expected.val)):
        assert all(torch.equal(a, b) for a, b in zip(mine.tensors, theirs.tensors, strict=True))
    assert splits.preprocessing.class_names == NAMES
    alone = load_data(hub / "train-00000-of-00001.parquet", val_fraction=0.2)
    assert len(alone.train) + len(alone.val) == N_TRAIN
    features = np.random.default_rng(0).normal(size=(20, 3))
    labels = [NAMES[i % 3] for i in range(20)]
    pq.write_table(pa.table({"f1": features[:, 0], "f2": features[:, 1], "f3": features[:, 2], "Class": labels}),
                   tmp_path / "table.parquet")
    table = load_data(tmp_path / "table.parquet", val_fraction=0.25)
    assert table.preprocessing.input_shape == (3,) and table.preprocessing.class_names == NAMES
    lists = {"pixels": [list(range(i, i + 5)) for i in range(20)], "label": [i % 2 for i in range(20)]}
    pq.write_table(pa.table(lists), tmp_path / "lists.parquet")
    assert load_data(tmp_path / "lists.parquet", val_fraction=0.25).preprocessing.input_shape == (5,)
    pq.write_table(pa.table({"f1": features[:, 0], "kind": labels}), tmp_path / "nolabel.parquet")
    expect_error(lambda: load_data(tmp_path / "nolabel.parquet"), "no label column among f1, kind")
    (tmp_path / "junk.parquet").write_bytes(RANDOM_BYTES)
    expect_error(lambda: load_data(tmp_path / "junk.parquet"), "junk.parquet: can't read as a Parquet table")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    expect_error(lambda: load_data(tmp_path / "table.parquet"), "needs pyarrow", "pip install pyarrow")


def test_hugging_face_shards_and_saved_datasets(tmp_path: Path) -> None:
    """A hub split in numbered Parquet shards is read end to end; a ``datasets`` ``save_to_disk`` folder (a
    DatasetDict: ``dataset_dict.json``, a folder a split of Arrow stream shards, the class names in
    ``dataset_info.json``) reads as the arrays it holds, and a single saved Dataset is split with the seed."""
    pytest.importorskip("pyarrow")
    pytest.importorskip("PIL")
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = arrays()
    np.savez(tmp_path / "d.npz", **data)
    expected = load_data(tmp_path / "d.npz")
    hub = tmp_path / "hub"
    hub.mkdir()
    half = N_TRAIN // 2
    _hub_parquet(hub / "train-00000-of-00002.parquet", data["x_train"][:half], data["y_train"][:half], NAMES)
    _hub_parquet(hub / "train-00001-of-00002.parquet", data["x_train"][half:], data["y_train"][half:], NAMES)
    _hub_parquet(hub / "test-00000-of-00001.parquet", data["x_test"], data["y_test"], NAMES)
    saved = tmp_path / "saved"
    for split in ("train", "test"):
        (saved / split).mkdir(parents=True)
        _hub_parquet(tmp_path / "tmp.parquet", data[f"x_{split}"], data[f"y_{split}"], NAMES)
        table = pq.read_table(tmp_path / "tmp.parquet").replace_schema_metadata(None)
        with pa.OSFile(str(saved / split / "data-00000-of-00001.arrow"), "wb") as sink, \
                pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        (saved / split / "state.json").write_text(json.dumps({"_data_files": [{"filename":
                                                                                "data-00000-of-00001.arrow"}]}))
        (saved / split / "dataset_info.json").write_text(json.dumps(
            {"features": {"image": {"_type": "Image"}, "label": {"names": list(NAMES), "_type": "ClassLabel"}}}))
    (saved / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    for folder in (hub, saved):
        splits = load_data(folder)
        for mine, theirs in ((splits.train, expected.train), (splits.val, expected.val)):
            assert all(torch.equal(a, b) for a, b in zip(mine.tensors, theirs.tensors, strict=True)), folder
        assert splits.preprocessing.class_names == NAMES, folder
    one = load_data(saved / "train", val_fraction=0.2)  # a single Dataset saved: split with the seed
    assert len(one.train) + len(one.val) == N_TRAIN and one.preprocessing.class_names == NAMES


def test_split_files_named_by_their_split(tmp_path: Path) -> None:
    """Kaggle's ``mnist_train.csv`` + ``mnist_test.csv``: the one file whose name has the word train, and the one with
    test, are the two splits (before, only ``train.csv`` + ``test.csv``)."""
    data = arrays()
    for split in ("train", "test"):
        x, y = data[f"x_{split}"].reshape(-1, SIDE * SIDE), data[f"y_{split}"]
        np.savetxt(tmp_path / f"mnist_{split}.csv", np.column_stack([y, x]), fmt="%d", delimiter=",",
                   header="label," + ",".join(f"p{i}" for i in range(SIDE * SIDE)), comments="")
    splits = load_data(tmp_path)
    assert splits.train.tensors[1].tolist() == data["y_train"].tolist()
    assert splits.val.tensors[1].tolist() == data["y_test"].tolist()
    (tmp_path / "mnist_train_small.csv").write_text((tmp_path / "mnist_train.csv").read_text())
    expect_error(lambda: load_data(tmp_path), "no IDX files")  # two training files: which one is unsaid


def test_data_held_in_memory_from_python(tmp_path: Path) -> None:
    """From Python, the data may be the objects themselves — arrays as a file holds them, or (train, val) datasets —
    and they read as that file would: ``bnnc.finetune(model, ((x, y), (xt, yt)))`` in a notebook."""
    data = arrays()
    np.savez(tmp_path / "d.npz", **data)
    from_file = load_data(tmp_path / "d.npz")
    x, y, xt, yt = (data[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    datasets = (TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                TensorDataset(torch.from_numpy(xt), torch.from_numpy(yt)))
    for given in (((x, y), (xt, yt)), (x, y, xt, yt), dict(data), datasets, [*datasets]):
        splits = load_data(given)
        assert splits.source.startswith("the data given (in memory")
        for mine, theirs in ((splits.train, from_file.train), (splits.val, from_file.val)):
            assert all(torch.equal(a, b) for a, b in zip(mine.tensors, theirs.tensors, strict=True))
    both = np.concatenate([x, xt]), np.concatenate([y, yt])
    assert len(load_data(both, val_fraction=0.25).val) == (N_TRAIN + N_TEST) // 4
    expect_error(lambda: load_data([1, 2, 3]), "the data given", "expected (train_dataset, val_dataset)")


def test_tensor_datasets_saved_whole(tmp_path: Path) -> None:
    """``torch.save(TensorDataset(x, y))`` (a plain class of tensors: loaded with weights_only, it allowed), alone, as
    ``(train_set, test_set)`` and as ``{'train': ..., 'val': ..., 'test': ...}`` (the test split measured)."""
    data = arrays()
    x, y, xt, yt = (torch.from_numpy(data[k]) for k in ("x_train", "y_train", "x_test", "y_test"))
    train, test = TensorDataset(x, y), TensorDataset(xt, yt)
    torch.save((train, test), tmp_path / "pair.pt")
    torch.save({"train": train, "val": TensorDataset(xt[:3], yt[:3]), "test": test, "epoch": 3}, tmp_path / "dict.pt")
    for name in ("pair.pt", "dict.pt"):
        splits = load_data(tmp_path / name)
        assert torch.equal(splits.train.tensors[1], y) and torch.equal(splits.val.tensors[1], yt), name
    torch.save(TensorDataset(torch.cat([x, xt]), torch.cat([y, yt])), tmp_path / "one.pt")
    torch.save((torch.cat([x, xt]), torch.cat([y, yt])), tmp_path / "xy.pt")
    assert by_sample(load_data(tmp_path / "one.pt")) == by_sample(load_data(tmp_path / "xy.pt"))
    torch.save({"mine": train}, tmp_path / "unnamed.pt")
    expect_error(lambda: load_data(tmp_path / "unnamed.pt"), "a TensorDataset under 'mine'", "'train' and 'test'")


def test_csv_tables(tmp_path: Path) -> None:
    """A table as pandas writes it (its index column, a header, class names as labels), one with the label first
    (Kaggle's MNIST), one without a header (np.savetxt: the label last), and one with semicolons."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).round(4)
    y = np.arange(40) % 3
    named = ",f0,f1,f2,species\n" + "".join(
        f"{i},{a},{b},{c},{NAMES[::-1][k]}\n" for i, ((a, b, c), k) in enumerate(zip(x, y, strict=True)))
    (tmp_path / "pandas.csv").write_text(named)
    splits = load_data(tmp_path / "pandas.csv")
    assert splits.preprocessing.class_names == NAMES and splits.preprocessing.input_shape == (3,)
    assert by_sample(splits) == {tuple(np.float32(v) for v in row): 2 - k for row, k in zip(x.tolist(), y, strict=True)}
    (tmp_path / "first.csv").write_text("Label,a,b,c\n" + "".join(
        f"{k},{a},{b},{c}\n" for (a, b, c), k in zip(x, y, strict=True)))
    np.savetxt(tmp_path / "plain.csv", np.c_[x, y], delimiter=",")
    (tmp_path / "semi.csv").write_text("".join(f"{a};{b};{c};{k}\n" for (a, b, c), k in zip(x, y, strict=True)))
    expected = {tuple(np.float32(v) for v in row): int(k) for row, k in zip(x.tolist(), y, strict=True)}
    for name in ("first.csv", "plain.csv", "semi.csv"):
        splits = load_data(tmp_path / name)
        assert by_sample(splits) == expected, name
        assert (splits.preprocessing.pixel_scale, splits.preprocessing.mean) == (1.0, (0.0,))  # numbers, not pixels
    # Kaggle's MNIST CSV: a row of whole numbers in [0, 255] is an image's pixels, read as the same .npz would be
    pixels = rng.integers(0, 256, (40, 64), dtype=np.uint8)  # 8x8 images
    (tmp_path / "pixels.csv").write_text("label," + ",".join(f"pixel{i}" for i in range(64)) + "\n" + "".join(
        f"{k}," + ",".join(map(str, row)) + "\n" for row, k in zip(pixels, y, strict=True)))
    np.savez(tmp_path / "pixels.npz", x=pixels, y=y)
    table, npz = load_data(tmp_path / "pixels.csv"), load_data(tmp_path / "pixels.npz")
    assert table.preprocessing == npz.preprocessing and table.preprocessing.pixel_scale == 1 / 255
    assert by_sample(table) == by_sample(npz)
    # a model that records its classes: the names map to its indices, whichever of them the table holds
    pre = Preprocessing(input_shape=(3,), mean=(0.0,), std=(1.0,), class_names=("c", "a", "b"), pixel_scale=1.0)
    labels = by_sample(load_data(tmp_path / "pandas.csv", preprocessing=pre)).values()
    assert sorted(set(labels)) == [0, 1, 2] and list(labels) != list(by_sample(splits).values())
    (tmp_path / "some.csv").write_text("f0,f1,f2,label\n1,2,3,b\n4,5,6,b\n7,8,9,a\n1,1,1,b\n")
    some = load_data(tmp_path / "some.csv", preprocessing=pre, val_fraction=0.25)
    assert sorted(by_sample(some).values()) == [1, 2, 2, 2]


def test_a_folder_of_train_and_test_files(tmp_path: Path) -> None:
    """``train.csv`` + ``test.csv`` (the test file lacking a class: names keep the training file's indices),
    ``train.npz`` + ``val.npz`` under other usual names, and a folder of ``.npy`` arrays."""
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "train.csv").write_text("f0,f1,label\n1,2,cat\n3,4,ant\n5,6,bee\n7,8,cat\n")
    (tmp_path / "tables" / "test.csv").write_text("f0,f1,label\n9,9,cat\n8,8,bee\n")
    splits = load_data(tmp_path / "tables")
    assert splits.preprocessing.class_names == ("ant", "bee", "cat")
    assert splits.train.tensors[1].tolist() == [2, 0, 1, 2] and splits.val.tensors[1].tolist() == [2, 1]
    assert splits.val.tensors[0].tolist() == [[9.0, 9.0], [8.0, 8.0]]
    data = arrays()
    (tmp_path / "arrays").mkdir()
    np.savez(tmp_path / "arrays" / "train.npz", X=data["x_train"], Y=data["y_train"])
    np.savez(tmp_path / "arrays" / "val.npz", images=data["x_test"], labels=data["y_test"])
    splits = load_data(tmp_path / "arrays")
    assert splits.val.tensors[1].tolist() == data["y_test"].tolist()
    torch.testing.assert_close(splits.val.tensors[0], normalised(data["x_test"], splits.preprocessing))
    np.savez(tmp_path / "arrays" / "val.npz", x_test=data["x_test"])
    expect_error(lambda: load_data(tmp_path / "arrays"), "val.npz", "expected keys x, y")
    (tmp_path / "npy").mkdir()  # numpy.save, one array a file
    for key, name in (("x_train", "X_train"), ("y_train", "y_train"), ("x_test", "X_test"), ("y_test", "y_test")):
        np.save(tmp_path / "npy" / f"{name}.npy", data[key])
    splits = load_data(tmp_path / "npy")
    assert splits.train.tensors[1].tolist() == data["y_train"].tolist()
    torch.testing.assert_close(splits.val.tensors[0], normalised(data["x_test"], splits.preprocessing))
    expect_error(lambda: load_data(tmp_path / "npy" / "X_train.npy"), "holds no labels", "pass the folder")


SIGNALS = {  # model, how the data is saved -> the model's sample shape, and how the data became it
    "channels-last for a Conv1d": ("archs:conv1d_net", {"channels": 3}, (40, 3), (3, 40), "swap"),
    "channels-first for a Conv1d": ("archs:conv1d_net", {"channels": 3}, (3, 40), (3, 40), "same"),
    "channels-last for a model that transposes": ("archs:SequenceLast", {"channels": 3}, (40, 3), (40, 3), "same"),
    "one channel of any length": ("archs:conv1d_net", {}, (1, 500), (1, 500), "same"),
    "no channel axis": ("archs:conv1d_net", {}, (500,), (1, 500), "reshape"),
}


@pytest.mark.parametrize("case", SIGNALS)
def test_signals_meet_the_model_in_its_layout(tmp_path: Path, case: str) -> None:
    """1-D signals as users save them, for a model given as a state dict: read in the layout the model takes, the
    same way again once that shape is recorded (a later step), never reshaped across channels."""
    from bnnc.loading import load_checkpoint
    from bnnc.resolve import data_for_model

    arch, kwargs, saved, expected, how = SIGNALS[case]
    x = np.random.default_rng(0).normal(size=(24, *saved)).astype(np.float32)
    np.savez(tmp_path / "s.npz", x=x, y=np.arange(24) % 4)
    torch.save(load_checkpoint_model(arch, kwargs).state_dict(), tmp_path / "sd.pt")
    loaded = load_checkpoint(tmp_path / "sd.pt", arch=arch, arch_kwargs=kwargs)
    splits = data_for_model(str(tmp_path / "s.npz"), loaded)
    assert splits.preprocessing.input_shape == expected
    got = by_sample(splits)
    samples = torch.from_numpy(x.transpose(0, 2, 1) if how == "swap" else x).reshape(24, *expected)
    assert set(got) == {tuple(row) for row in samples.flatten(1).tolist()}
    again = load_data(tmp_path / "s.npz", preprocessing=splits.preprocessing)
    assert by_sample(again) == got


def load_checkpoint_model(arch: str, kwargs: dict[str, int]) -> torch.nn.Module:
    import archs

    return getattr(archs, arch.split(":")[1])(**kwargs)


BAD_TABLES = {
    "missing": ("a,b,label\n1,2,0\n3,,1\n", "line 3, column 'b': is empty"),
    "category": ("a,color,label\n1,red,0\n3,blue,1\n", "line 2, column 'color': 'red' is not a number"),
    "ragged": ("a,b,label\n1,2,0\n3,1\n", "line 3 has 2 columns, the first has 3"),
    "regression": ("a,b,target\n1,2,0.5\n3,1,1.25\n", "label column 'target' holds 0.5, not a class"),
    "empty": ("\n\n", "the table is empty"),
    "header-only": ("a,b,label\n", "a header and no rows"),
    "label-only": ("label\n1\n2\n", "only a label column ('label'), no features"),
}


@pytest.mark.parametrize("case", BAD_TABLES)
def test_bad_tables(tmp_path: Path, case: str) -> None:
    text, needle = BAD_TABLES[case]
    (tmp_path / "t.csv").write_text(text)
    expect_error(lambda: load_data(tmp_path / "t.csv"), "t.csv", needle)
    (tmp_path / "u.csv").write_bytes(b"\xff\xfe\x00\x81 not text")
    expect_error(lambda: load_data(tmp_path / "u.csv"), "u.csv", "can't read as a text table")
    pre = Preprocessing(input_shape=(2,), mean=(0.0,), std=(1.0,), class_names=("a", "b"), pixel_scale=1.0)
    (tmp_path / "v.csv").write_text("x0,x1,label\n1,2,a\n3,4,zebra\n")
    expect_error(lambda: load_data(tmp_path / "v.csv", preprocessing=pre), "'zebra', not one of the classes a, b")


def test_float_data_gets_identity_preprocessing(tmp_path: Path) -> None:
    data = arrays()
    floats = {k: (v / 255).astype(np.float32) if k.startswith("x") else v for k, v in data.items()}
    np.savez(tmp_path / "f.npz", **floats)
    splits = load_data(tmp_path / "f.npz")
    pre = splits.preprocessing
    assert (pre.pixel_scale, pre.mean, pre.std) == (1.0, (0.0,), (1.0,))
    torch.testing.assert_close(splits.train.tensors[0][:, 0].numpy(), floats["x_train"])


def test_given_preprocessing_is_applied_exactly(tmp_path: Path) -> None:
    data = arrays()
    np.savez(tmp_path / "d.npz", **data)
    pre = Preprocessing(input_shape=(SIDE * SIDE,), mean=(0.5,), std=(0.25,), class_names=NAMES)
    splits = load_data(tmp_path / "d.npz", preprocessing=pre)
    assert splits.preprocessing == pre
    assert splits.train.tensors[0].shape == (N_TRAIN, SIDE * SIDE)
    torch.testing.assert_close(splits.train.tensors[0], normalised(data["x_train"], pre))


def test_a_stated_normalisation_replaces_the_datas_statistics(tmp_path: Path) -> None:
    """--mean/--std: uint8 pixels scaled by 1/255 then normalised per channel; float data normalised as it is."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 3, SIDE, SIDE), dtype=np.uint8)
    y = np.zeros(8, np.int64)
    np.savez(tmp_path / "rgb.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    stated = Normalisation(mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    splits = load_data(tmp_path / "rgb.npz", normalisation=stated)
    assert (splits.preprocessing.mean, splits.preprocessing.std) == (stated.mean, stated.std)
    stat = torch.tensor(stated.mean).reshape(3, 1, 1), torch.tensor(stated.std).reshape(3, 1, 1)
    torch.testing.assert_close(splits.train.tensors[0], (torch.from_numpy(x).float() / 255 - stat[0]) / stat[1])
    floats = x.astype(np.float32)
    np.savez(tmp_path / "f.npz", x_train=floats, y_train=y, x_test=floats, y_test=y)
    one = load_data(tmp_path / "f.npz", normalisation=Normalisation(mean=(100.0,), std=(50.0,)))
    assert one.preprocessing.pixel_scale == 1.0
    torch.testing.assert_close(one.train.tensors[0], (torch.from_numpy(floats) - 100) / 50)
    expect_error(lambda: load_data(tmp_path / "rgb.npz", normalisation=Normalisation((0.1, 0.2), (1.0, 1.0))),
                 "--mean gives 2 values", "has 3 channels", "give 1 or 3 values")
    recorded = Preprocessing(input_shape=(3, SIDE, SIDE), mean=(0.1,), std=(0.5,))
    load_data(tmp_path / "rgb.npz", preprocessing=recorded, normalisation=Normalisation((0.1,) * 3, (0.5,) * 3))
    expect_error(lambda: load_data(tmp_path / "rgb.npz", preprocessing=recorded, normalisation=stated),
                 "records mean [0.1], std [0.5]", "drop --mean/--std")
    expect_error(lambda: load_data(splits, normalisation=Normalisation((0.0,), (1.0,))), "not the mean/std stated")
    expect_error(lambda: Normalisation((0.0,), (0.0,)), "--std must be positive")
    expect_error(lambda: Normalisation((float("nan"),), (1.0,)), "--mean must be finite")


def test_a_tables_rows_take_one_mean_and_std_a_feature(tmp_path: Path) -> None:
    """A model on a table's rows (1-D input) trained behind a StandardScaler: --mean/--std give one value a feature
    (was refused: "has 1 channel"), applied column by column; one value for all still works; other counts refused."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((16, 5)) * [1, 2, 3, 4, 5] + [10, 20, 30, 40, 50]).astype(np.float32)
    y = np.zeros(16, np.int64)
    np.savez(tmp_path / "t.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    scaler = Normalisation(mean=tuple(map(float, x.mean(0))), std=tuple(map(float, x.std(0))))
    splits = load_data(tmp_path / "t.npz", normalisation=scaler)
    assert splits.preprocessing.input_shape == (5,) and splits.preprocessing.mean == scaler.mean
    torch.testing.assert_close(splits.train.tensors[0], torch.from_numpy((x - x.mean(0)) / x.std(0)))
    assert Preprocessing.from_dict(splits.preprocessing.to_dict()) == splits.preprocessing  # recorded, read back
    load_data(tmp_path / "t.npz", normalisation=Normalisation((30.0,), (10.0,)))
    expect_error(lambda: load_data(tmp_path / "t.npz", normalisation=Normalisation((0.0, 0.0), (1.0, 1.0))),
                 "--mean gives 2 values", "has 5 features", "give 1 or 5 values")


def test_nhwc_rgb_arrays_become_nchw(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, SIDE, SIDE, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", x_train=x, y_train=np.zeros(8, np.int64), x_test=x, y_test=np.zeros(8, np.int64))
    pre = Preprocessing(input_shape=(3, SIDE, SIDE), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    out = load_data(tmp_path / "rgb.npz", preprocessing=pre).train.tensors[0]
    torch.testing.assert_close(out, torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)


def write_png_folder(root: Path, per_class: dict[str, list[np.ndarray]]) -> Path:
    from PIL import Image

    for name, images in per_class.items():
        (root / name).mkdir(parents=True)
        for i, pixels in enumerate(images):
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def grey_images(n: int, value: int, size: tuple[int, int] = (SIDE, SIDE)) -> list[np.ndarray]:
    return [np.full(size, value + i, np.uint8) for i in range(n)]


def test_image_folder_class_names_from_sub_folders(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    root = write_png_folder(tmp_path / "img", {"cat": grey_images(10, 10), "dog": grey_images(10, 200)})
    splits = load_data(root, val_fraction=0.2)
    pre = splits.preprocessing
    assert pre.class_names == ("cat", "dog") and pre.input_shape == (1, SIDE, SIDE)
    assert len(splits.train) == 16 and len(splits.val) == 4
    x = torch.cat([splits.train.tensors[0], splits.val.tensors[0]])
    y = torch.cat([splits.train.tensors[1], splits.val.tensors[1]])
    pixels = x[:, 0, 0, 0] * pre.std[0] + pre.mean[0]
    assert torch.equal(pixels > 0.5, y == 1)  # dogs are the bright ones
    # images in sub-folders of a class folder count, as torchvision's ImageFolder counts them; hidden ones don't
    from PIL import Image

    for sub in ("2019", ".thumbnails"):
        (root / "dog" / sub).mkdir()
        Image.fromarray(grey_images(1, 220)[0]).save(root / "dog" / sub / "x.png")
    assert len(load_data(root, val_fraction=0.2).train) == 17


def test_image_folder_follows_the_models_classes_channels_and_size(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    root = tmp_path / "img"
    write_png_folder(root / "train", {"dog": grey_images(3, 200, (9, 9)), "cat": grey_images(3, 10, (9, 9))})
    write_png_folder(root / "val", {"dog": grey_images(2, 200, (9, 9))})
    pre = Preprocessing(input_shape=(3, SIDE, SIDE), mean=(0.0,), std=(1.0,), class_names=("dog", "cat"))
    splits = load_data(root, preprocessing=pre)
    assert splits.train.tensors[0].shape == (6, 3, SIDE, SIDE)  # greyscale -> RGB, resized to the model's
    assert splits.train.tensors[1].tolist() == [1, 1, 1, 0, 0, 0]  # labels index the model's class_names
    assert splits.val.tensors[1].tolist() == [0, 0]
    assert splits.val.tensors[0].min() > 0.7


def test_image_folder_of_rgb_images_is_rgb(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    colour = np.zeros((SIDE, SIDE, 3), np.uint8)
    colour[..., 0] = 255
    root = write_png_folder(tmp_path / "img", {"red": [colour] * 10, "black": [colour * 0] * 10})
    x = load_data(root).train.tensors[0]
    assert x.shape[1:] == (3, SIDE, SIDE)


def _listed_images(root: Path, n: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` greyscale images whose brightness says their class (0-3), and the classes."""
    labels = np.arange(n) % 4
    return [np.full((SIDE, SIDE), 20 + 60 * int(c) + i // 4, np.uint8) for i, c in enumerate(labels)], labels


def _write_listing(root: Path, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and a table of their labels as users lay them out; returns every image's pixel and label, in the
    order of the table's rows (training rows first)."""
    from PIL import Image

    images, labels = _listed_images(root, 40)
    names = ["ant", "bee", "cat", "dog"]
    rows = []
    for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        if layout == "kaggle":  # train/ + test/ flat, ids without suffix, class names, an unlabelled test list
            split = "train" if i < 32 else "test"
            path = root / split / f"id{i:03d}.jpg" if split == "train" else root / split / f"id{i:03d}.png"
            rows.append((split, f"id{i:03d}", names[label]))
        elif layout == "paths":  # images/ and a headerless, semicolon table of relative paths and class indices
            path = root / "images" / f"{i}.png"
            rows.append(("all", f"images/{i}.png", str(label)))
        elif layout == "one-hot":  # plant-pathology style: one column per class
            path = root / "images" / f"Train_{i}.png"
            rows.append(("all", f"Train_{i}", ",".join("1" if k == label else "0" for k in range(4))))
        else:  # "split": train.csv and val.csv naming files, extra columns, the label column named
            path = root / "data" / f"{i}.bmp"
            rows.append(("train" if i < 32 else "val", f"{i}.bmp", str(label)))
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, **({"quality": 100} if path.suffix == ".jpg" else {}))
    if layout == "kaggle":
        (root / "train.csv").write_text("id,breed\n" + "".join(f"{r[1]},{r[2]}\n" for r in rows if r[0] == "train"))
        (root / "test.csv").write_text("id\n" + "".join(f"{r[1]}\n" for r in rows if r[0] == "test"))
        (root / "sample_submission.csv").write_text("id,breed\n" + "".join(f"{r[1]},ant\n" for r in rows
                                                                            if r[0] == "test"))
        keep = [i for i, r in enumerate(rows) if r[0] == "train"]
        return np.array([images[i][0, 0] for i in keep]), labels[keep]
    if layout == "paths":
        (root / "labels.csv").write_text("".join(f"{r[1]};{r[2]}\n" for r in rows))
    elif layout == "one-hot":
        (root / "train.csv").write_text("image_id," + ",".join(names) + "\n"
                                        + "".join(f"{r[1]},{r[2]}\n" for r in rows))
    else:
        for split in ("train", "val"):
            (root / f"{split}.csv").write_text("filename,width,height,label\n" + "".join(
                f"{r[1]},{SIDE},{SIDE},{r[2]}\n" for r in rows if r[0] == split))
    return np.array([im[0, 0] for im in images]), labels


@pytest.mark.parametrize("layout", ["kaggle", "paths", "one-hot", "split"])
def test_images_listed_in_a_table_with_their_labels(tmp_path: Path, layout: str) -> None:
    """Images beside a table of their labels (a Kaggle competition's train/ + train.csv) are read with the table's
    labels; before, the folder was an image folder of one class, "train", and every label 0."""
    pytest.importorskip("PIL")
    root = tmp_path / layout
    brightness, labels = _write_listing(root, layout)
    splits = load_data(root, val_fraction=0.25)
    pre = splits.preprocessing
    x = torch.cat([splits.train.tensors[0], splits.val.tensors[0]])
    y = torch.cat([splits.train.tensors[1], splits.val.tensors[1]]).numpy()
    pixels = ((x[:, 0, 0, 0] * pre.std[0] + pre.mean[0]) * 255).round().numpy()
    found = dict(zip(pixels.tolist(), y.tolist(), strict=True))  # every image has its own brightness
    assert len(found) == len(labels) and found == dict(zip(brightness.tolist(), labels.tolist(), strict=True))
    if layout == "split":
        assert len(splits.val) == 8 and splits.source.endswith("(images listed in train.csv and val.csv; "
                                                               f"train 32, val 8, samples (1, {SIDE}, {SIDE}))")
    if layout in ("kaggle", "one-hot"):
        assert pre.class_names == ("ant", "bee", "cat", "dog")
    table = root / ("labels.csv" if layout == "paths" else "train.csv")
    alone = load_data(table, val_fraction=0.25)  # the table itself is the data too: all its rows, split
    assert len(alone.train) + len(alone.val) == (32 if layout == "split" else len(labels))


def test_a_table_of_features_beside_images_stays_a_table(tmp_path: Path) -> None:
    """Numeric ids that happen to be the names of images in the folder (plots/1.png) don't make a table a listing."""
    pytest.importorskip("PIL")
    write_png_folder(tmp_path / "plots", {"loss": grey_images(4, 9)})
    (tmp_path / "plots" / "loss").rename(tmp_path / "plots" / "1")
    rows = "".join(f"{i},{i / 10},{i % 2}\n" for i in range(20))
    (tmp_path / "data.csv").write_text("id,f1,label\n" + rows)
    splits = load_data(tmp_path / "data.csv", val_fraction=0.25)
    assert splits.preprocessing.input_shape == (2,) and len(splits.train) == 15
    # a table of class names is looked up cell by cell, never by walking its folder's tree (a home folder, say)
    named = "".join(f"{i / 10},{i % 3},{NAMES[i % 3]}\n" for i in range(20))
    (tmp_path / "named.csv").write_text("f1,f2,label\n" + named)

    def no_walk(*args: object, **kwargs: object) -> None:
        raise AssertionError("walked the folder")

    import bnnc.data.images

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bnnc.data.images.os, "walk", no_walk)
        assert load_data(tmp_path / "named.csv", val_fraction=0.25).preprocessing.class_names == NAMES


def test_bad_image_listings(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    root = tmp_path / "paths"
    _write_listing(root, "paths")
    with (root / "labels.csv").open("a") as f:
        f.write("images/gone.png;1\n")
    expect_error(lambda: load_data(root), "labels.csv: line 41", "no image 'images/gone.png'")
    kaggle = tmp_path / "kaggle"
    _write_listing(kaggle, "kaggle")
    expect_error(lambda: load_data(kaggle / "test.csv"), "test.csv: no label column")
    (kaggle / "train.csv").write_text("id,breed,size\nid000,ant,3\nid001,bee,4\nid002,cat,4\n")
    expect_error(lambda: load_data(kaggle), "train.csv: no label column")
    split = tmp_path / "split"
    _write_listing(split, "split")
    (split / "more.csv").write_text((split / "val.csv").read_text())
    (split / "train.csv").rename(split / "first.csv")
    expect_error(lambda: load_data(split), "3 tables list images with labels", "name the training table train.csv")
    one = write_png_folder(tmp_path / "one", {"train": grey_images(4, 9)})  # flat images, the table forgotten
    expect_error(lambda: load_data(one), "one class sub-folder, 'train'", "a table beside the images")


FUNCTION_MODULE = textwrap.dedent(
    """
    import torch
    from torch.utils.data import DataLoader, Dataset, TensorDataset
    from bnnc.data import DataSplits, Preprocessing

    class Pairs(Dataset):
        def __init__(self, n):
            self.n = n
        def __len__(self):
            return self.n
        def __getitem__(self, i):
            return torch.full((1, 4, 4), 10 * i, dtype=torch.uint8), i % 2

    def raw():
        return Pairs(6), TensorDataset(torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 0]))

    def loaders():
        return tuple(DataLoader(ds, batch_size=4, shuffle=True) for ds in raw())

    def keras_arrays():
        x = torch.stack([Pairs(6)[i][0] for i in range(6)]).numpy()
        y = torch.tensor([i % 2 for i in range(6)]).numpy()
        return (x, y), (torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 0]))

    def as_dict():
        (x, y), (xt, yt) = keras_arrays()
        return {"X_train": x, "y_train": y, "X_test": xt, "y_test": yt}

    class Rows(Dataset):  # Hugging Face datasets' rows
        def __init__(self, pairs):
            self.pairs = pairs
        def __len__(self):
            return len(self.pairs)
        def __getitem__(self, i):
            x, y = self.pairs[i]
            return {"image": x, "label": y, "id": i}

    def rows():
        return tuple(Rows(ds) for ds in raw())

    class Unnamed(Rows):
        def __getitem__(self, i):
            return {"pixels": self.pairs[i][0], "label": 0}

    def bad_rows():
        return Rows(Pairs(2)), Unnamed(Pairs(2))

    def ready():
        pre = Preprocessing(input_shape=(1, 4, 4), mean=(0.0,), std=(1.0,))
        ds = TensorDataset(torch.ones(2, 1, 4, 4), torch.tensor([0, 1]))
        return DataSplits(ds, ds, pre, "ready-made")

    def wrong():
        return 42

    def broken():
        return Pairs(2), [("not", "pairs", "!")]

    def failing():
        raise FileNotFoundError("no such file: /data/train.bin")
    """
)


@pytest.fixture
def data_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throwaway importable module of data functions; returns its name."""
    (tmp_path / "my_bnnc_data.py").write_text(FUNCTION_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_bnnc_data"
    sys.modules.pop("my_bnnc_data", None)


def test_function_returning_raw_datasets_is_normalised(data_module: str) -> None:
    pre = Preprocessing(input_shape=(16,), mean=(0.1,), std=(0.5,), class_names=("even", "odd"))
    splits = load_data(f"{data_module}:raw", preprocessing=pre)
    x, y = splits.train.tensors
    assert x.shape == (6, 16) and y.tolist() == [0, 1, 0, 1, 0, 1]
    torch.testing.assert_close(x[:, 0], (torch.arange(6) * 10 / 255 - 0.1) / 0.5)
    # the same data as (train_loader, val_loader), as arrays (Keras' tuples, a dict of a .npz's keys) and as dict rows
    for form in ("loaders", "keras_arrays", "as_dict", "rows"):
        other = load_data(f"{data_module}:{form}", preprocessing=pre)
        for ours, theirs in ((splits.train, other.train), (splits.val, other.val)):
            assert all(torch.equal(a, b) for a, b in zip(ours.tensors, theirs.tensors, strict=True)), form


def test_function_returning_data_splits_is_used_as_it_is(data_module: str) -> None:
    splits = load_data(f"{data_module}:ready")
    assert isinstance(splits, DataSplits) and splits.source == "ready-made"
    other = Preprocessing(input_shape=(1, 4, 4), mean=(0.5,), std=(1.0,))
    expect_error(lambda: load_data(f"{data_module}:ready", preprocessing=other), "differs from the model's")


def test_function_errors(data_module: str) -> None:
    expect_error(lambda: load_data("no_such_module_xyz:load"), "no_such_module_xyz", "import")
    expect_error(lambda: load_data(f"{data_module}:missing"), "defines no function 'missing'")
    expect_error(lambda: load_data(f"{data_module}:wrong"), "expected (train_dataset, val_dataset)")
    expect_error(lambda: load_data(f"{data_module}:broken"), "val", "map-style torch Dataset")
    expect_error(lambda: load_data(f"{data_module}:bad_rows"), "val sample 0 is a dict with keys pixels, label")
    expect_error(lambda: load_data(f"{data_module}:failing"), "raised FileNotFoundError", "/data/train.bin")


@pytest.mark.parametrize("spec", ["sys:exit", "os:getcwd", "bnnc.io:load_model", "torch:load", "builtins:exit",
                                  "numpy:load"])
def test_a_data_function_is_one_the_user_wrote(spec: str) -> None:
    """Not the standard library, torch or bnnc, and defined in the module named (numpy:load is numpy.lib's)."""
    expect_error(lambda: load_data(spec), spec)


def test_a_data_function_that_exits_is_a_data_error(tmp_path, monkeypatch) -> None:
    (tmp_path / "exiting_loader.py").write_text("import sys\n\ndef load():\n    sys.exit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    expect_error(lambda: load_data("exiting_loader:load"), "raised SystemExit")


# --- Preprocessing -----------------------------------------------------------------------------


def test_preprocessing_round_trips_through_json() -> None:
    pre = Preprocessing(input_shape=(3, 8, 8), mean=(0.1, 0.2, 0.3), std=(0.5, 0.6, 0.7), class_names=NAMES)
    d = json.loads(json.dumps(pre.to_dict()))
    assert Preprocessing.from_dict(d) == pre
    assert d["input_shape"] == [3, 8, 8] and d["class_names"] == list(NAMES)


def test_preprocessing_apply_per_channel() -> None:
    pre = Preprocessing(input_shape=(2, 1, 2), mean=(0.5, 0.0), std=(0.5, 2.0), pixel_scale=0.01)
    x = torch.tensor([[100, 100, 50, 50]], dtype=torch.uint8)
    out = pre.apply(x)
    assert out.dtype == torch.float32 and out.shape == (1, 2, 1, 2)
    torch.testing.assert_close(out, torch.tensor([[[[1.0, 1.0]], [[0.25, 0.25]]]]))
    floats = pre.apply(torch.tensor([[1.0, 1.0, 0.5, 0.5]]))  # floats are not scaled again
    torch.testing.assert_close(floats, out)
    expect_error(lambda: pre.apply(torch.zeros(1, 5)), "(5,)", "(2, 1, 2)")


@pytest.mark.parametrize(
    ("d", "needle"),
    [
        ([1, 2], "expected a dict"),
        ({"input_shape": [1, 2, 2], "mean": [0.0]}, "missing keys ['std']"),
        ({"input_shape": [1, 2, 2], "mean": [0.0], "std": [1.0], "scale": 1}, "unknown keys ['scale']"),
        ({"input_shape": [1, 2, 2], "mean": [0.0], "std": [0.0]}, "std must be positive"),
        ({"input_shape": [3, 2, 2], "mean": [0.0, 0.0], "std": [1.0]}, "mean must be 1 or 3"),
        ({"input_shape": [1, 2, 2], "mean": ["0"], "std": [1.0]}, "must be numbers"),
        ({"input_shape": [0, 2], "mean": [0.0], "std": [1.0]}, "input_shape must be positive"),
        ({"input_shape": 784, "mean": [0.0], "std": [1.0]}, "input_shape must be a list"),
        ({"input_shape": [1], "mean": [0.0], "std": [1.0], "class_names": [1, 2]}, "class_names must be strings"),
    ],
)
def test_preprocessing_from_bad_dict(d: object, needle: str) -> None:
    expect_error(lambda: Preprocessing.from_dict(d), needle)  # type: ignore[arg-type]


# --- bad inputs --------------------------------------------------------------------------------


def test_missing_path_and_unsupported_files(tmp_path: Path) -> None:
    expect_error(lambda: load_data(tmp_path / "nope.npz"), "nope.npz", "not found")
    (tmp_path / "empty").mkdir()
    expect_error(lambda: load_data(tmp_path / "empty"), "empty", "no IDX files, CIFAR batches, train and test files")
    (tmp_path / "d.xlsx").write_text("1,2\n")
    expect_error(lambda: load_data(tmp_path / "d.xlsx"), "d.xlsx", "unsupported data file type .xlsx", ".csv table")
    expect_error(lambda: load_data(tmp_path / "d.xlsx", val_fraction=1.5), "val_fraction")


RANDOM_BYTES = np.random.default_rng(1).bytes(300)


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("train-images-idx3-ubyte", RANDOM_BYTES, "not an IDX file"),
        ("train-images-idx3-ubyte.gz", b"\x1f\x8b" + RANDOM_BYTES, "can't read as an IDX file"),
        ("train-images-idx3-ubyte", idx_bytes(arrays()["x_train"])[:-7], "need"),
        ("train-images-idx3-ubyte.gz", gzip.compress(idx_bytes(arrays()["x_train"]))[:-30], "can't read"),
        ("train-images-idx3-ubyte", idx_bytes(arrays()["y_train"]), "expected a 3-D IDX array"),
        ("train-images-idx3-ubyte", b"", "not an IDX file"),
    ],
    ids=["random", "random-gz", "truncated", "truncated-gz", "wrong-ndim", "empty"],
)
def test_bad_idx_file(tmp_path: Path, name: str, content: bytes, needle: str) -> None:
    folder = write_idx_folder(tmp_path / "idx", arrays(), gz=False)
    (folder / "train-images-idx3-ubyte").unlink()
    (folder / name).write_bytes(content)
    expect_error(lambda: load_data(folder), "train-images-idx3-ubyte", needle)


def test_idx_folder_one_level_down_is_pointed_at(tmp_path: Path) -> None:
    write_idx_folder(tmp_path / "raw", arrays(), gz=True)
    expect_error(lambda: load_data(tmp_path), "no IDX files here", f"pass {tmp_path / 'raw'}")


def test_idx_folder_missing_a_file(tmp_path: Path) -> None:
    folder = write_idx_folder(tmp_path / "idx", arrays(), gz=True)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    expect_error(lambda: load_data(folder), "missing IDX files t10k-labels-idx1-ubyte")


def test_idx_labels_out_of_range_for_the_model(tmp_path: Path) -> None:
    folder = write_idx_folder(tmp_path / "idx", arrays(), gz=True)
    pre = Preprocessing(input_shape=(1, SIDE, SIDE), mean=(0.5,), std=(0.5,), class_names=("a", "b"))
    expect_error(lambda: load_data(folder, preprocessing=pre), "y_train", "[0, 2)")


def bad(**changes: object) -> dict[str, object]:
    return arrays() | changes


BAD_ARRAYS = {
    "wrong-dtype": (bad(x_train=np.zeros((4, SIDE, SIDE), np.complex64), y_train=np.zeros(4, np.int64)),
                    "dtype complex64"),
    "float-labels": (bad(y_train=np.full(N_TRAIN, 0.5, np.float32)), "integer class indices"),
    "negative-labels": (bad(y_test=-np.ones(N_TEST, np.int64)), "labels from -1"),
    "zero-samples": (bad(x_train=np.zeros((0, SIDE, SIDE), np.uint8), y_train=np.zeros(0, np.int64)), "no samples"),
    "label-count": (bad(y_train=np.zeros(N_TRAIN - 1, np.int64)), f"expected ({N_TRAIN},)"),
    "soft-labels": (bad(y_train=np.full((N_TRAIN, 3), 1 / 3, np.float32)), "save one class, e.g. y.argmax(1)"),
    "nan": (bad(x_test=np.full((N_TEST, SIDE, SIDE), np.nan, np.float32)), "NaN"),
    "shape-mismatch": (bad(x_test=np.zeros((N_TEST, SIDE + 1, SIDE), np.uint8)), "differ in shape"),
    "wrong-keys": ({"images": np.zeros((2, 2, 2), np.uint8)}, "expected keys x_train"),
    "too-few-to-split": ({"x": np.zeros((1, 2, 2), np.uint8), "y": np.zeros(1, np.int64)}, "too few"),
}


@pytest.mark.parametrize("case", BAD_ARRAYS, ids=list(BAD_ARRAYS))
@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_bad_arrays(tmp_path: Path, case: str, suffix: str) -> None:
    content, needle = BAD_ARRAYS[case]
    path = tmp_path / f"bad{suffix}"
    if suffix == ".npz":
        np.savez(path, **content)
    else:
        torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in content.items()}, path)
    expect_error(lambda: load_data(path), path.name, needle)


def test_data_that_does_not_fit_the_model(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", **arrays(), class_names=np.array(NAMES))
    pre = Preprocessing(input_shape=(1, 28, 28), mean=(0.5,), std=(0.5,), class_names=NAMES)
    expect_error(lambda: load_data(tmp_path / "d.npz", preprocessing=pre), "d.npz", "(1, 28, 28)", "can't be reshaped")
    renamed = Preprocessing(input_shape=(1, SIDE, SIDE), mean=(0.5,), std=(0.5,), class_names=("x", "y", "z"))
    expect_error(lambda: load_data(tmp_path / "d.npz", preprocessing=renamed), "class_names", "differ")


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_random_and_truncated_files(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(RANDOM_BYTES)
    expect_error(lambda: load_data(path), path.name, "can't read")
    good = tmp_path / f"good{suffix}"
    if suffix == ".npz":
        np.savez_compressed(good, **arrays())
    else:
        torch.save({k: torch.from_numpy(v) for k, v in arrays().items()}, good)
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    expect_error(lambda: load_data(path), path.name, "can't read")


def test_npz_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "p.npz", **arrays(), class_names=np.array([{"evil": 1}], dtype=object))
    expect_error(lambda: load_data(tmp_path / "p.npz"), "p.npz", "can't read")


def test_pt_with_code_or_no_dict_is_refused(tmp_path: Path) -> None:
    from fractions import Fraction

    torch.save({"x_train": Fraction(1, 2)}, tmp_path / "obj.pt")
    expect_error(lambda: load_data(tmp_path / "obj.pt"), "obj.pt", "fractions.Fraction", "torch.save(")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    expect_error(lambda: load_data(tmp_path / "tensor.pt"), "tensor.pt", "expected a dict of arrays")


def test_bad_image_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("PIL")
    root = write_png_folder(tmp_path / "mixed", {"a": grey_images(2, 0), "b": grey_images(2, 0, (SIDE + 1, SIDE))})
    expect_error(lambda: load_data(root), str(Path("b", "0.png")), f"differs from {SIDE}x{SIDE}", "--input-shape")
    x = load_data(root, input_shape=(3, 12, 10), val_fraction=0.5).train.tensors[0]  # as --input-shape: resized, RGB
    assert x.shape[1:] == (3, 12, 10)
    pre = Preprocessing(input_shape=(1, SIDE, SIDE), mean=(0.5,), std=(0.5,), class_names=("a", "c"))
    expect_error(lambda: load_data(root, preprocessing=pre), "class 'b' is not one of the model's classes")
    corrupt = write_png_folder(tmp_path / "corrupt", {"a": grey_images(2, 0), "b": grey_images(2, 0)})
    (corrupt / "a" / "9.png").write_bytes(RANDOM_BYTES)
    expect_error(lambda: load_data(corrupt), "9.png", "can't read as an image")
    (tmp_path / "hollow" / "a").mkdir(parents=True)
    expect_error(lambda: load_data(tmp_path / "hollow"), "hollow", "no images found")
    monkeypatch.setitem(sys.modules, "PIL", None)
    expect_error(lambda: load_data(root), "needs Pillow", "pip install pillow")


def test_tensor_dataset_type_is_what_callers_get(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", **arrays())
    splits = load_data(str(tmp_path / "d.npz"))
    assert isinstance(splits.train, TensorDataset) and isinstance(splits.val, TensorDataset)


# --- CIFAR as its authors distribute it ----------------------------------------------------------


def _pixels(splits: DataSplits) -> tuple[np.ndarray, np.ndarray]:
    """Both splits' samples back as the uint8 pixels they were normalised from."""
    pre = splits.preprocessing
    mean, std = (torch.tensor(v).reshape(1, -1, 1, 1) for v in (pre.mean, pre.std))
    return tuple(((d.tensors[0] * std + mean) / pre.pixel_scale).round().to(torch.uint8).numpy()  # type: ignore[return-value]
                 for d in (splits.train, splits.val))


def _cifar_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)


@pytest.mark.parametrize("version", ["cifar-10-batches-py", "cifar-100-python", "cifar-10-batches-bin"])
def test_cifar_folders_as_torchvision_downloads_them(tmp_path: Path, version: str) -> None:
    """The Python version's pickled batches (read by an unpickler that builds arrays and lists only) and the binary
    version's records: images (N, 3, 32, 32) in the files' order, labels, the class names of the meta file."""
    import pickle

    folder = tmp_path / version
    folder.mkdir()
    parts = [(_cifar_images(n, seed), np.arange(n) % 10) for n, seed in ((6, 0), (4, 1), (5, 2))]
    train, test = parts[:2], parts[2]
    names = [f"class{i}" for i in range(10)]

    def dump(name: str, obj: object) -> None:
        (folder / name).write_bytes(pickle.dumps(obj, protocol=2))

    if version == "cifar-10-batches-py":
        for i, (x, y) in enumerate(train, 1):
            dump(f"data_batch_{i}", {b"batch_label": b"training batch", b"labels": y.tolist(), b"data": x,
                                     b"filenames": [b"a.png"] * len(y)})
        dump("test_batch", {b"labels": test[1].tolist(), b"data": test[0]})
        dump("batches.meta", {b"label_names": [n.encode() for n in names], b"num_vis": 3072})
    elif version == "cifar-100-python":
        x, y = np.concatenate([p[0] for p in train]), np.concatenate([p[1] for p in train])
        dump("train", {b"fine_labels": y.tolist(), b"coarse_labels": (y // 5).tolist(), b"data": x})
        dump("test", {b"fine_labels": test[1].tolist(), b"coarse_labels": (test[1] // 5).tolist(), b"data": test[0]})
        dump("meta", {b"fine_label_names": [n.encode() for n in names], b"coarse_label_names": [b"a", b"b"]})
    else:
        for i, (x, y) in enumerate(train, 1):
            (folder / f"data_batch_{i}.bin").write_bytes(np.concatenate([y[:, None].astype(np.uint8), x], 1).tobytes())
        (folder / "test_batch.bin").write_bytes(np.concatenate([test[1][:, None].astype(np.uint8), test[0]],
                                                               1).tobytes())
        (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    splits = load_data(folder)
    assert splits.preprocessing.input_shape == (3, 32, 32) and splits.preprocessing.class_names == tuple(names)
    x_train, x_test = _pixels(splits)
    assert np.array_equal(x_train, np.concatenate([p[0] for p in train]).reshape(-1, 3, 32, 32))
    assert np.array_equal(x_test, test[0].reshape(-1, 3, 32, 32))
    assert splits.train.tensors[1].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]
    assert splits.val.tensors[1].tolist() == [0, 1, 2, 3, 4]


def test_a_tampered_cifar_batch_runs_nothing(tmp_path: Path) -> None:
    """A pickle naming any global but numpy's array constructors is refused before anything runs."""
    import pickle

    from conftest import Payload

    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": _cifar_images(2, 0), b"labels": [0, 1]}, protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Payload(marker), b"labels": [0]}, protocol=2))
    expect_error(lambda: load_data(folder), "test_batch", "not a CIFAR batch bnnc will unpickle",
                 "refused global posix.system")
    assert not marker.exists()
    (folder / "test_batch").write_bytes(b"\x80\x02}q\x00")  # truncated
    expect_error(lambda: load_data(folder), "test_batch", "truncated or corrupted")


def test_kaggle_idx_names(tmp_path: Path) -> None:
    """Kaggle's MNIST names its IDX files with a dot: train-images.idx3-ubyte."""
    rng = np.random.default_rng(0)
    for name, array in (("train-images.idx3-ubyte", rng.integers(0, 255, (8, 4, 4), dtype=np.uint8)),
                        ("train-labels.idx1-ubyte", np.arange(8, dtype=np.uint8) % 3),
                        ("t10k-images.idx3-ubyte", rng.integers(0, 255, (4, 4, 4), dtype=np.uint8)),
                        ("t10k-labels.idx1-ubyte", np.arange(4, dtype=np.uint8) % 3)):
        dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        (tmp_path / name).write_bytes(bytes([0, 0, 8, array.ndim]) + dims + array.tobytes())
    splits = load_data(tmp_path)
    assert len(splits.train) == 8 and splits.val.tensors[1].tolist() == [0, 1, 2, 0]


def test_pickled_arrays(tmp_path: Path) -> None:
    """``pickle.dump((x, y), f)``, a dict of arrays, and the classic ``mnist.pkl.gz`` — ``(train, validation, test)``
    pairs, gzip-compressed, protocol 2 — read by the unpickler that builds arrays and containers only; a pickle
    naming any other global (a payload, a DataFrame's class) is one error and runs nothing."""
    import gzip
    import pickle

    from conftest import Payload

    data = arrays()
    np.savez(tmp_path / "d.npz", **data)
    expected = load_data(tmp_path / "d.npz")
    pairs = [(data["x_train"], data["y_train"]), (data["x_test"][:4], data["y_test"][:4]),
             (data["x_test"], data["y_test"])]
    (tmp_path / "mnist.pkl.gz").write_bytes(gzip.compress(pickle.dumps(tuple(pairs), protocol=2)))
    (tmp_path / "dict.pickle").write_bytes(pickle.dumps(dict(data)))
    for name in ("mnist.pkl.gz", "dict.pickle"):
        splits = load_data(tmp_path / name)
        for mine, theirs in ((splits.train, expected.train), (splits.val, expected.val)):
            assert all(torch.equal(a, b) for a, b in zip(mine.tensors, theirs.tensors, strict=True)), name
    both = (np.concatenate([data["x_train"], data["x_test"]]), np.concatenate([data["y_train"], data["y_test"]]))
    (tmp_path / "xy.pkl").write_bytes(pickle.dumps(both))
    assert len(load_data(tmp_path / "xy.pkl", val_fraction=0.25).val) == (N_TRAIN + N_TEST) // 4
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"x": Payload(marker), "y": [0]}))
    expect_error(lambda: load_data(tmp_path / "evil.pkl"), "evil.pkl: not a pickle bnnc will unpickle",
                 "refused global posix.system", "numpy.savez")
    assert not marker.exists()
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(dict(data))[:50])
    expect_error(lambda: load_data(tmp_path / "cut.pkl"), "cut.pkl: can't read as a pickle", "truncated")
