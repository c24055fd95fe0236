"""Train the bundled FP32 sample models on the bundled Fashion-MNIST sample (CPU, seeded).

    python sample_models/train.py --model all        # or mlp / vgg / resnet

Each model is written as a bnnc checkpoint (``sample_models/<name>.pt``) and its test accuracy on
the full 10,000-image Fashion-MNIST test set, parameter count, training time and the command that
made it are recorded in ``sample_models/models.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bnnc.data import DataSplits, load_data, sample_data_path
from bnnc.io import save_checkpoint

HERE = Path(__file__).resolve().parent
SHIFT = 2  # random translation of up to +-2 pixels: the only augmentation


@dataclass(frozen=True)
class Recipe:
    """How one sample model is trained: AdamW with a one-cycle learning rate."""

    arch: str
    arch_kwargs: dict[str, Any]
    epochs: int
    max_lr: float
    weight_decay: float = 5e-4
    batch_size: int = 128
    label_smoothing: float = 0.1
    augment: bool = True  # random shifts; they cost the MLP accuracy, which sees no locality


RECIPES = {
    "mlp": Recipe("bnnc.zoo:MLP", {"in_features": 784, "hidden": [1024, 1024, 1024], "num_classes": 10},
                  epochs=15, max_lr=1e-3, augment=False),
    "vgg": Recipe("bnnc.zoo:VGG", {"in_channels": 1, "num_classes": 10, "width": 32, "fc": 256, "image_size": 28},
                  epochs=6, max_lr=3e-3),
    "resnet": Recipe("bnnc.zoo:ResNet", {"in_channels": 1, "num_classes": 10, "width": 16, "blocks": [2, 2, 2]},
                     epochs=8, max_lr=3e-3),
}


def build(arch: str, arch_kwargs: dict[str, Any]) -> nn.Module:
    """Rebuild from the checkpoint's ``arch`` reference, as bnnc does."""
    module_name, name = arch.split(":")
    return getattr(importlib.import_module(module_name), name)(**arch_kwargs)


def shift(x: torch.Tensor, background: float, gen: torch.Generator) -> torch.Tensor:
    """Translate each image in ``(N, C, H, W)`` by its own random offset, filling with background."""
    n, _, h, w = x.shape
    padded = F.pad(x, (SHIFT, SHIFT, SHIFT, SHIFT), value=background)
    dy, dx = torch.randint(0, 2 * SHIFT + 1, (2, n), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (N, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (N, 1, W)
    return padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)  # (N, C, H, W)


@torch.inference_mode()
def accuracy(model: nn.Module, data: torch.utils.data.TensorDataset, batch_size: int = 1000) -> float:
    model.eval()
    x, y = data.tensors
    correct = sum(
        int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return correct / len(x)


def train(recipe: Recipe, data: DataSplits, seed: int) -> tuple[nn.Module, float]:
    """Train from scratch; returns the model (in eval mode) and the seconds it took."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build(recipe.arch, recipe.arch_kwargs).to(memory_format=torch.channels_last)
    x, y = data.train.tensors
    steps = (len(x) + recipe.batch_size - 1) // recipe.batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.max_lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.max_lr, epochs=recipe.epochs, steps_per_epoch=steps)
    pre = data.preprocessing
    background = (0.0 - pre.mean[0]) / pre.std[0]  # a black pixel after normalisation
    start = time.perf_counter()
    for epoch in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), recipe.batch_size):
            idx = order[i : i + recipe.batch_size]
            xb = shift(x[idx], background, gen) if recipe.augment else x[idx]
            xb = xb.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(xb), y[idx], label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        print(f"  epoch {epoch + 1}/{recipe.epochs}: loss {loss.item():.3f}, "
              f"{time.perf_counter() - start:.0f}s", flush=True)
    return model.eval(), time.perf_counter() - start


def write_json(path: Path, obj: Any) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
        json.dump(obj, tmp, indent=2)
        tmp.write("\n")
    os.chmod(tmp.name, 0o644)  # temporary files are created private
    os.replace(tmp.name, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=[*RECIPES, "all"], default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    torch.set_num_threads(2)

    data_path = sample_data_path()
    data = load_data(data_path)  # preprocessing: mean/std of the training sample
    registry_path = args.out / "models.json"
    registry = json.loads(registry_path.read_text()) if registry_path.exists() else {}
    for name in RECIPES if args.model == "all" else [args.model]:
        recipe = RECIPES[name]
        print(f"{name}: {recipe.arch} {recipe.arch_kwargs}, {recipe.epochs} epochs", flush=True)
        model, seconds = train(recipe, data, args.seed)
        model = model.to(memory_format=torch.contiguous_format)
        acc = accuracy(model, data.val)
        path = args.out / f"{name}.pt"
        save_checkpoint(
            path,
            state_dict=model.state_dict(),
            arch=recipe.arch,
            arch_kwargs=recipe.arch_kwargs,
            preprocessing=data.preprocessing.to_dict(),
            metrics={"test_accuracy": round(acc, 4), "test_samples": len(data.val), "data": data_path.name},
            overwrite=True,
        )
        registry[name] = {
            "file": path.name,
            "arch": recipe.arch,
            "arch_kwargs": recipe.arch_kwargs,
            "test_accuracy": round(acc, 4),
            "test_samples": len(data.val),
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_seconds": round(seconds),
            "file_bytes": path.stat().st_size,
            "recipe": {"optimizer": "AdamW", "schedule": "one-cycle", "epochs": recipe.epochs,
                       "max_lr": recipe.max_lr, "weight_decay": recipe.weight_decay,
                       "batch_size": recipe.batch_size, "label_smoothing": recipe.label_smoothing,
                       "augmentation": f"random shift up to {SHIFT} px" if recipe.augment else "none",
                       "seed": args.seed},
            "data": data_path.name,
            "machine": f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}",
            "command": f"python sample_models/train.py --model {name} --seed {args.seed}",
        }
        write_json(registry_path, dict(sorted(registry.items())))
        print(f"{name}: test accuracy {acc:.4f}, {seconds:.0f}s -> {path}", flush=True)


if __name__ == "__main__":
    main()
