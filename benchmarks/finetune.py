"""Fine-tuning benchmark: accuracy won back per sample model, the recipe ablation, step time.

    python -m benchmarks.finetune                        # all three sample models, 5 epochs
    python -m benchmarks.finetune --models mlp --ablation
    python -m benchmarks.finetune --step-time
    python -m benchmarks.finetune --smoke                # tiny sizes: keeps the script working in CI

Data: the full Fashion-MNIST training set when the Debian package ``dataset-fashion-mnist`` is
installed (``--data full``), else the bundled 20,000-image sample; the full 10,000-image test set
either way. Prints a table and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from itertools import product
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from bnnc import defaults
from bnnc.conversion import ConvertOptions, convert_file
from bnnc.data import DataSplits, Preprocessing, load_data, sample_data_path
from bnnc.layers import clip_latent_weights
from bnnc.loading import load_checkpoint
from bnnc.training import FinetuneConfig, finetune, make_optimizer

REPO = Path(__file__).resolve().parent.parent
FULL_SET = Path("/usr/share/datasets/fashion-mnist")
ABLATIONS: dict[str, tuple[dict[str, Any], ConvertOptions]] = {  # (finetune changes, conversion options)
    "default recipe": ({}, ConvertOptions()),
    "no distillation": ({"distill": False}, ConvertOptions()),
    "no BN/threshold recalibration": ({"recalibrate": False}, ConvertOptions()),
    "no alpha scale": ({}, ConvertOptions(scale=False)),
    "shift-based AdaMax": ({"optimizer": "shift-adamax"}, ConvertOptions()),
    "shift-based BatchNorm": ({"shift_bn": True}, ConvertOptions()),
    "stochastic binarization": ({"stochastic": True}, ConvertOptions()),
    "ApproxSign gradient": ({"ste": "approxsign"}, ConvertOptions()),
    "EDE gradient (IR-Net)": ({"ste": "ede"}, ConvertOptions()),
    "two-step (real weights first)": ({"two_step": True}, ConvertOptions()),
    "BN re-estimation": ({"bn_reestimate": True}, ConvertOptions()),
    "5% learning-rate warm-up": ({"warmup": 0.05}, ConvertOptions()),
    "linear learning-rate decay": ({"schedule": "linear"}, ConvertOptions()),
    "distillation weight 0.9": ({"distill_weight": 0.9}, ConvertOptions()),
    "distillation temperature 2": ({"temperature": 2.0}, ConvertOptions()),
    "Bop (no latent weights)": ({"bop": True}, ConvertOptions()),
    "latent weights at the global lr 1e-3 (before 2026-12-01)": ({"latent_lr": 0.0, "lr": 1e-3}, ConvertOptions()),
    "batch 128 (before 2026-12-01)": ({"batch_size": 128}, ConvertOptions()),
    "latent weights not equalized per channel (before 2026-12-02)": ({"equalize_latent": False}, ConvertOptions()),
    "Adam lr 1e-3 for the other parameters (before 2026-12-02)": ({"lr": 1e-3}, ConvertOptions()),
}


def data_for(model_path: Path, which: str, smoke: bool) -> DataSplits:
    pre = Preprocessing.from_dict(load_checkpoint(model_path).preprocessing)
    source = FULL_SET if which == "full" or (which == "auto" and FULL_SET.is_dir()) else sample_data_path()
    splits = load_data(source, preprocessing=pre)
    if smoke:
        splits = DataSplits(TensorDataset(*(t[:256] for t in splits.train.tensors)),
                            TensorDataset(*(t[:256] for t in splits.val.tensors)), pre, splits.source + " (smoke)")
    return splits


def run(model: str, splits: DataSplits, config: FinetuneConfig, options: ConvertOptions, tmp: Path) -> dict:
    src = REPO / "sample_models" / f"{model}.pt"
    tag = f"{model}-{time.monotonic_ns()}"
    converted = convert_file(src, tmp / f"{tag}.bnnc", options=options).output
    result = finetune(converted, splits, config, tmp / f"{tag}.ft.bnnc")
    return {
        "model": model, "fp32": result.fp32_accuracy, "converted": result.converted_accuracy,
        "recalibrated": result.recalibrated_accuracy, "best": result.best_accuracy, "best_epoch": result.best_epoch,
        "per_epoch": [r.val_accuracy for r in result.history], "seconds": round(result.seconds, 1),
        "drop_pt": round((result.fp32_accuracy - result.best_accuracy) * 100, 2) if result.fp32_accuracy else None,
    }


def step_time(model: str, batch: int = defaults.BATCH_SIZE, steps: int = 30) -> dict[str, float]:
    """Median seconds of one training step (forward, backward, optimizer, clip): binarized vs FP32."""
    src = REPO / "sample_models" / f"{model}.pt"
    with tempfile.TemporaryDirectory() as d:
        binary = load_checkpoint(convert_file(src, Path(d) / "b.bnnc").output).model
    fp32 = load_checkpoint(src).model
    x = torch.randn(batch, *load_checkpoint(src).preprocessing["input_shape"])
    y = torch.randint(0, 10, (batch,))
    times = {}
    for name, net, is_binary in (("fp32", fp32, False), ("binarized", binary, True)):
        opt = make_optimizer(net, FinetuneConfig()) if is_binary else torch.optim.Adam(net.parameters(), 1e-3)
        net.train()
        samples = []
        for i in range(steps + 5):
            t0 = time.perf_counter()
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if is_binary:
                clip_latent_weights(net)
            if i >= 5:
                samples.append(time.perf_counter() - t0)
        times[name] = statistics.median(samples)
    return {"batch": batch, "fp32_s": times["fp32"], "binarized_s": times["binarized"],
            "ratio": times["binarized"] / times["fp32"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mlp", "vgg", "resnet"], choices=["mlp", "vgg", "resnet"])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=1, help="runs of each row, seeds 0..N-1 (the spread)")
    ap.add_argument("--data", choices=["auto", "full", "sample"], default="auto")
    ap.add_argument("--ablation", action="store_true", help="run the recipe ablation (one run per row)")
    ap.add_argument("--step-time", action="store_true", help="only time training steps")
    ap.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch: checks the script runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    epochs = 1 if args.smoke else args.epochs
    out: dict[str, Any] = {"threads": args.threads, "torch": torch.__version__, "epochs": epochs, "runs": []}

    if args.step_time:
        for model in args.models:
            t = step_time(model, steps=3 if args.smoke else 30)
            out["runs"].append({"model": model, **t})
            print(f"{model:7s} step (batch {t['batch']}) fp32 {t['fp32_s'] * 1e3:7.1f} ms  "
                  f"binarized {t['binarized_s'] * 1e3:7.1f} ms  ratio {t['ratio']:.2f}x")
    else:
        rows = ABLATIONS if args.ablation else {"default recipe": ABLATIONS["default recipe"]}
        with tempfile.TemporaryDirectory() as d:
            for model in args.models:
                splits = data_for(REPO / "sample_models" / f"{model}.pt", args.data, args.smoke)
                out["data"] = splits.source
                for (name, (change, options)), seed in product(rows.items(), range(args.seeds)):
                    config = replace(FinetuneConfig(epochs=epochs, seed=seed), **change)
                    r = run(model, splits, config, options, Path(d))
                    r.update(recipe=name, seed=seed)
                    out["runs"].append(r)
                    print(f"{model:7s} {name:32s} seed {seed} fp32 {r['fp32']:.2%}  converted {r['converted']:.2%}  "
                          f"recalibrated {r['recalibrated'] or float('nan'):.2%}  best {r['best']:.2%} "
                          f"(epoch {r['best_epoch']})  drop {r['drop_pt']} pt  {r['seconds']} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
