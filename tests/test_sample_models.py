"""The bundled data sample and FP32 sample models: what they claim to be, and as accurate as recorded."""

from __future__ import annotations

import functools
import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import bnnc.data
from bnnc.data import Preprocessing, load_data, read_idx, sample_data_path
from bnnc.errors import DataError

SAMPLE_MODELS = Path(__file__).resolve().parent.parent / "sample_models"
MODELS = ("mlp", "vgg", "resnet")
FULL_SET = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def registry() -> dict[str, Any]:
    return json.loads((SAMPLE_MODELS / "models.json").read_text())


def checkpoint(name: str) -> dict[str, Any]:
    return torch.load(SAMPLE_MODELS / f"{name}.pt", map_location="cpu", weights_only=True)


def rebuild(ckpt: dict[str, Any]) -> nn.Module:
    """From ``arch``/``arch_kwargs`` and the weights alone: no pickled code."""
    module_name, name = ckpt["arch"].split(":")
    model = getattr(importlib.import_module(module_name), name)(**ckpt["arch_kwargs"])
    model.load_state_dict(ckpt["state_dict"], strict=True)
    return model.eval()


@functools.cache
def sample_test_split(preprocessing_json: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The sample's test split normalised as a checkpoint says, loaded once per preprocessing."""
    pre = Preprocessing.from_dict(json.loads(preprocessing_json))
    return load_data(sample_data_path(), preprocessing=pre).val.tensors


def test_sample_is_stratified_and_holds_the_full_test_set() -> None:
    path = sample_data_path()
    assert path.stat().st_size < 14_000_000
    with np.load(path, allow_pickle=False) as d:
        assert d["x_train"].shape == (20_000, 28, 28) and d["x_train"].dtype == np.uint8
        assert d["x_test"].shape == (10_000, 28, 28) and d["x_test"].dtype == np.uint8
        assert np.bincount(d["y_train"]).tolist() == [2000] * 10
        assert np.bincount(d["y_test"]).tolist() == [1000] * 10
        assert tuple(d["class_names"].tolist()) == CLASS_NAMES


def test_missing_sample_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bnnc.data, "__file__", str(tmp_path / "site-packages" / "bnnc" / "data" / "__init__.py"))
    with pytest.raises(DataError, match="bundled data sample is missing") as info:
        sample_data_path()
    assert "pip install -e ." in str(info.value)


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_is_self_describing_and_matches_models_json(name: str) -> None:
    ckpt = checkpoint(name)
    assert (ckpt["format"], ckpt["format_version"]) == ("bnnc-model", 1)
    model = rebuild(ckpt)
    pre = Preprocessing.from_dict(ckpt["preprocessing"])
    assert pre.input_shape == (1, 28, 28) and pre.class_names == CLASS_NAMES
    assert model(torch.zeros(2, *pre.input_shape)).shape == (2, len(CLASS_NAMES))
    entry = registry()[name]
    assert (entry["arch"], entry["arch_kwargs"]) == (ckpt["arch"], ckpt["arch_kwargs"])
    assert entry["test_accuracy"] == ckpt["metrics"]["test_accuracy"]
    assert ckpt["metrics"]["test_samples"] == entry["test_samples"] == 10_000
    assert entry["parameters"] == sum(p.numel() for p in model.parameters())
    assert entry["file_bytes"] == (SAMPLE_MODELS / f"{name}.pt").stat().st_size


@pytest.mark.accuracy
@pytest.mark.parametrize("name", MODELS)
def test_accuracy_on_the_test_split_is_as_recorded(name: str) -> None:
    ckpt = checkpoint(name)
    model = rebuild(ckpt).to(memory_format=torch.channels_last)  # same maths, faster on CPU
    x, y = sample_test_split(json.dumps(ckpt["preprocessing"], sort_keys=True))
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        correct = sum(int((model(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum()) for i in range(0, len(x), 1000))
    assert abs(correct / len(x) - ckpt["metrics"]["test_accuracy"]) <= 0.01


def test_full_fashion_mnist_folder_loads_with_a_models_preprocessing() -> None:
    if not FULL_SET.is_dir():
        pytest.skip(f"{FULL_SET} absent (apt-get install dataset-fashion-mnist)")
    pre = Preprocessing.from_dict(checkpoint("mlp")["preprocessing"])
    full = load_data(FULL_SET, preprocessing=pre)
    assert len(full.train) == 60_000 and len(full.val) == 10_000
    assert torch.bincount(full.train.tensors[1]).tolist() == [6000] * 10
    with np.load(sample_data_path(), allow_pickle=False) as d:
        np.testing.assert_array_equal(d["x_test"], read_idx(FULL_SET / "t10k-images-idx3-ubyte.gz"))
