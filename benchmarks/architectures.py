"""The architecture families users bring, measured through the user's path: ``bnnc compress`` on a plain
state dict with ``--arch``, default options (distillation on), 2 epochs.

    python -m benchmarks.architectures --source torchvision          # the real torchvision/timm models
    python -m benchmarks.architectures --source tests --families resnet18 mobilenet_v2   # tests/families.py

``--source torchvision`` needs torchvision and timm importable beside torch (not the CPU torch wheel CI
installs: see the README). Each model gets a 1-channel stem (Fashion-MNIST) and is first trained in FP32
for ``--fp32-epochs`` on the bundled 20,000-image sample (VGG and ConvNeXt at 32x32, zero-padded: their
strides need it). Then, per family, in one run and on this machine: what the plan keeps real-valued,
convert time (calibration included), the recalibration before fine-tuning, accuracy on the 10,000 test
images (FP32, after 2 epochs), ONNX size and ONNX Runtime latency against FP32 (``bnnc report``), and
the CPU flags. Prints Markdown; ``--out F`` also writes ``F.json`` and ``F.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bnnc.data import sample_data_path
from bnnc.pipeline import compress
from bnnc.planning import Precision
from bnnc.training import Calibrating, FinetuneConfig, Started

REPO = Path(__file__).resolve().parent.parent
SIDES = {"vgg11_bn": 32, "convnext": 32}


def _gray(model: nn.Module, path: str) -> nn.Module:
    """Replace the RGB stem convolution at ``path`` by a 1-channel one of the same shape otherwise."""
    parent_name, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child) if not child.isdigit() else parent[int(child)]
    new = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=old.bias is not None)
    if child.isdigit():
        parent[int(child)] = new
    else:
        setattr(parent, child, new)
    return model


# torchvision/timm factories with a 1-channel stem, importable as --arch benchmarks.architectures:tv_NAME
def tv_resnet18(num_classes: int = 10) -> nn.Module:
    import torchvision
    return _gray(torchvision.models.resnet18(num_classes=num_classes), "conv1")


def tv_vgg11_bn(num_classes: int = 10) -> nn.Module:
    import torchvision
    return _gray(torchvision.models.vgg11_bn(num_classes=num_classes), "features.0")


def tv_mobilenet_v2(num_classes: int = 10) -> nn.Module:
    import torchvision
    return _gray(torchvision.models.mobilenet_v2(num_classes=num_classes), "features.0.0")


def tv_mobilenet_v3(num_classes: int = 10) -> nn.Module:
    import torchvision
    return _gray(torchvision.models.mobilenet_v3_small(num_classes=num_classes), "features.0.0")


def tv_shufflenet_v2(num_classes: int = 10) -> nn.Module:
    import torchvision
    return _gray(torchvision.models.shufflenet_v2_x0_5(num_classes=num_classes), "conv1.0")


def tv_efficientnet_b0(num_classes: int = 10) -> nn.Module:
    import torchvision
    return _gray(torchvision.models.efficientnet_b0(num_classes=num_classes), "features.0.0")


def tv_regnet_y(num_classes: int = 10) -> nn.Module:
    import torchvision
    return _gray(torchvision.models.regnet_y_400mf(num_classes=num_classes), "stem.0")


def tv_convnext(num_classes: int = 10) -> nn.Module:
    import torchvision
    return _gray(torchvision.models.convnext_tiny(num_classes=num_classes), "features.0.0")


def tv_vit(num_classes: int = 10) -> nn.Module:
    import torchvision
    model = torchvision.models.VisionTransformer(image_size=28, patch_size=4, num_layers=4, num_heads=4,
                                                 hidden_dim=128, mlp_dim=256, num_classes=num_classes)
    return _gray(model, "conv_proj")


def tv_timm_vit(num_classes: int = 10) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer
    return VisionTransformer(img_size=28, patch_size=4, in_chans=1, num_classes=num_classes, embed_dim=128, depth=4,
                             num_heads=4)


def tv_mixer(num_classes: int = 10) -> nn.Module:
    from timm.models.mlp_mixer import MlpMixer
    return MlpMixer(num_classes=num_classes, img_size=28, in_chans=1, patch_size=4, num_blocks=4, embed_dim=128)


FAMILIES = ["resnet18", "vgg11_bn", "mobilenet_v2", "mobilenet_v3", "shufflenet_v2", "efficientnet_b0", "regnet_y",
            "convnext", "vit", "timm_vit", "mixer"]


def _data(side: int, folder: Path) -> Path:
    """The bundled sample, zero-padded to ``side`` pixels where a family needs it."""
    src = sample_data_path()
    if side == 28:
        return src
    pad = (side - 28) // 2
    with np.load(src) as z:
        arrays = {k: np.pad(z[k], ((0, 0), (pad, pad), (pad, pad))) if k.startswith("x") else z[k] for k in z.files}
    path = folder / f"sample{side}.npz"
    np.savez(path, **arrays)
    return path


def _train_fp32(model: nn.Module, data: Path, epochs: int) -> tuple[float, float]:
    """Brief FP32 training (AdamW, one-cycle), as a user's model would have had; (accuracy, seconds)."""
    from bnnc.data import load_data

    splits = load_data(data, input_shape=(1, *np.load(data)["x_train"].shape[1:]))
    x, y = splits.train.tensors
    torch.manual_seed(0)
    lr = 5e-4 if any(isinstance(m, (nn.LayerNorm, nn.MultiheadAttention)) for m in model.modules()) else 1e-3
    optimizer = torch.optim.AdamW(model.parameters(), lr, weight_decay=0.05)
    steps = epochs * (len(x) // 128)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2 * lr, total_steps=steps)
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x) - 127, 128):
            idx = order[i:i + 128]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    seconds = time.perf_counter() - started
    model.eval()
    xt, yt = splits.val.tensors
    with torch.no_grad():
        correct = sum(int((model(xt[i:i + 500]).argmax(1) == yt[i:i + 500]).sum()) for i in range(0, len(xt), 500))
    return correct / len(xt), seconds


def run_family(name: str, source: str, fp32_epochs: int, epochs: int, folder: Path) -> dict[str, Any]:
    arch = f"benchmarks.architectures:tv_{name}" if source == "torchvision" else f"families:{name}"
    if source == "tests":
        sys.path.insert(0, str(REPO / "tests"))
    module_name, factory = arch.split(":")
    model = getattr(__import__(module_name, fromlist=[factory]), factory)()
    data = _data(SIDES.get(name, 28), folder)
    fp32_accuracy, train_seconds = _train_fp32(model, data, fp32_epochs)
    sd = folder / f"{name}_sd.pt"
    torch.save(model.state_dict(), sd)

    marks: dict[str, float] = {}

    def stage(text: str) -> None:
        marks.setdefault(text.split()[0], time.perf_counter())

    def event(e: Any) -> None:
        key = "calibrate-convert" if isinstance(e, Calibrating) and not e.batchnorm else \
            "calibrate-finetune" if isinstance(e, Calibrating) else "started" if isinstance(e, Started) else None
        if key:
            marks.setdefault(key, time.perf_counter())
            marks[key + "-end"] = time.perf_counter()

    result = compress(sd, data, folder / name, arch=arch, config=FinetuneConfig(epochs=epochs),
                      on_stage=stage, on_event=event, report_options={"samples": 10_000})
    marks["end"] = time.perf_counter()
    report = result.report.to_dict()
    plan = [layer for layer in report["layers"]]
    kept = [(layer["name"], layer["reason"]) for layer in plan if layer["precision"] == Precision.FP32.value]
    lat = report["latency"]["by_batch"]
    return {
        "family": name, "source": source, "arch": arch, "params": sum(p.numel() for p in model.parameters()),
        "fp32_accuracy": fp32_accuracy, "fp32_train_seconds": train_seconds,
        "layers": len(plan), "binary_layers": sum(layer["precision"] == "binary" for layer in plan),
        "kept": kept, "warnings": list(result.warnings),
        "convert_seconds": marks["fine-tune"] - marks["convert"],
        "convert_calibration_seconds": marks.get("calibrate-convert-end", 0) - marks.get("calibrate-convert", 0),
        "recalibration_seconds": marks.get("calibrate-finetune-end", 0) - marks.get("calibrate-finetune", 0),
        "finetune_seconds": result.finetune.seconds, "epochs": [h.val_accuracy for h in result.finetune.history],
        "recalibrated_accuracy": result.finetune.recalibrated_accuracy,
        "accuracy": report["accuracy"], "size": report["size"],
        "speedup_vs_fp32": {b: v["speedup_vs_fp32"] for b, v in lat.items()},
        "latency_ms": {b: {k: v[k]["median_ms"] for k in ("fp32", "int8", "bnnc")} for b, v in lat.items()},
        "threads": report["latency"]["threads"],
    }


def cpu_flags() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor()
    model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in out.splitlines() if line.startswith("Flags")), [])
    return f"{model}; " + " ".join(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "sse4_2"))


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| family | params | kept real-valued (of layers) | convert (s) | recalibration (s) | FP32 | "
             "bnnc, 2 epochs | same prediction as torch | ONNX FP32 ÷ bnnc | file ÷ data | speed vs FP32 b1 / b64 |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s, a, sp = r["size"], r["accuracy"], r["speedup_vs_fp32"]
        kept = "; ".join(sorted({reason.split(":")[0] for _, reason in r["kept"]}))
        lines.append(
            f"| {r['family']} | {r['params'] / 1e6:.1f}M | {len(r['kept'])} of {r['layers']}: {kept} | "
            f"{r['convert_seconds']:.0f} | {r['recalibration_seconds']:.0f} | {a['fp32']:.2%} | {a['bnnc_onnx']:.2%} | "
            f"{a['onnx_torch_agreement']:.2%} | "
            f"{s['compression_vs_fp32']:.1f}x | {s['bnnc_onnx_bytes'] / s['theoretical_bytes']:.2f} | "
            f"{sp['1']:.2f}x / {sp['64']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.architectures", description=__doc__.split("\n")[0])
    parser.add_argument("--source", choices=["torchvision", "tests"], default="tests")
    parser.add_argument("--families", nargs="+", default=FAMILIES)
    parser.add_argument("--fp32-epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.families:
            row = run_family(name, args.source, args.fp32_epochs, args.epochs, Path(tmp))
            print(json.dumps(row), flush=True)
            rows.append(row)
    text = (f"Machine: {cpu_flags()}; torch {torch.__version__}; {torch.get_num_threads()} threads.\n\n"
            + markdown(rows))
    print(text)
    if args.out:
        args.out.with_suffix(".json").write_text(json.dumps({"machine": cpu_flags(), "rows": rows}, indent=2))
        args.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
