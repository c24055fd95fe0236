"""Shared fixtures: small FP32 checkpoints of the zoo architectures, written to tmp_path."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from bnnc import zoo
from bnnc.checkpoint import save_checkpoint

# bnnc.seal's key for the whole session (subprocesses inherit it): tests never touch the user's ~/.config
os.environ["BNNC_CONFIG_DIR"] = tempfile.mkdtemp(prefix="bnnc-test-config-")
os.environ.pop("BNNC_ALLOW_ARCH", None)

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # pytest -n N: the workers share the cores, as torchrun's processes do
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    _threads = str(max(1, _cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    os.environ.setdefault("OMP_NUM_THREADS", _threads)  # the subprocesses tests start
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


SMALL_ARCHS: dict[str, tuple[str, dict[str, Any]]] = {
    "mlp": ("bnnc.zoo:MLP", {"hidden": [64, 48], "in_features": 784}),
    "cnn": ("bnnc.zoo:VGG", {"width": 4, "fc": 32}),
    "resnet": ("bnnc.zoo:ResNet", {"width": 8, "blocks": [1, 1]}),
}


def build(kind: str) -> nn.Module:
    """A small zoo model with non-trivial BatchNorm statistics, seeded."""
    ref, kwargs = SMALL_ARCHS[kind]
    torch.manual_seed(0)
    model = getattr(zoo, ref.split(":")[1])(**kwargs)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


@pytest.fixture
def fp32_checkpoint(tmp_path: Path) -> Callable[..., Path]:
    """``fp32_checkpoint("mlp")`` writes a self-describing FP32 checkpoint and returns its path."""

    def write(kind: str, name: str | None = None, preprocessing: dict[str, Any] | None = None) -> Path:
        ref, kwargs = SMALL_ARCHS[kind]
        path = tmp_path / (name or f"{kind}.pt")
        save_checkpoint(path, state_dict=build(kind).state_dict(), arch=ref, arch_kwargs=kwargs,
                        preprocessing=preprocessing)
        return path

    return write


PRE: dict[str, Any] = {"input_shape": [1, 28, 28], "mean": [0.3], "std": [0.35],
                       "class_names": [str(i) for i in range(10)], "pixel_scale": 1 / 255}
"""Preprocessing for checkpoints trained on :func:`learnable_npz` data."""


def learnable_npz(folder: Path, n_train: int = 512, n_test: int = 128, side: int = 28, name: str = "d.npz") -> Path:
    """A small .npz data set a model can learn: the class sets the brightness of one row of pixels."""
    import numpy as np

    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 10, n_train), rng.integers(0, 10, n_test)
    x_train = rng.integers(0, 60, (n_train, side, side), dtype=np.uint8)
    x_test = rng.integers(0, 60, (n_test, side, side), dtype=np.uint8)
    x_train[np.arange(n_train), y_train * 2] = 255
    x_test[np.arange(n_test), y_test * 2] = 255
    path = folder / name
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


class Payload:
    """Unpickling this runs ``touch MARKER``: hostile-file tests check the marker never appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, (f"touch {self.marker}",))


def images(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Normalised-looking image batch shaped like Fashion-MNIST: (n, 1, 28, 28)."""
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
