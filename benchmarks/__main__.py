"""All the figures users compare us on, in one run: ``python -m benchmarks``.

    python -m benchmarks                               # three sample models, data auto, 5 epochs
    python -m benchmarks --models mlp --data full      # the full 60k training set (Debian package)
    python -m benchmarks --smoke                       # tiny sizes: keeps this script working in CI

Per sample model, measured in this one run and on this machine:

* accuracy on the full 10,000-image Fashion-MNIST test set: the FP32 model, the binarized model
  before fine-tuning (thresholds calibrated on the training data), after 1, 3 and 5 epochs (one
  run, read from its history), the bnnc ONNX and ORT's int8 in ONNX Runtime;
* ONNX bytes: FP32, ORT int8 (static QDQ, per-channel, calibrated; dynamic too for the MLP), bnnc (float
  input, ``--uint8-input``, ``--float``), and
  the theoretical packed size;
* ONNX Runtime latency at batch 1 and 64, with 1 and 2 threads (median and interquartile range);
  with the openvino package installed, also the bnnc OpenVINO IR (XNOR-popcount, f32) and the FP32
  model in OpenVINO at the CPU's default precision, and the OpenVINO targets, met or missed;
* a fine-tuning step's time over an FP32 training step's.

Training data: the full Fashion-MNIST training set when the Debian package
``dataset-fashion-mnist`` is installed (``--data auto``, the default), else the bundled 20,000-image
sample; the run records which. Writes JSON and Markdown (``--out benchmarks/RESULTS``), prints the
Markdown. The paper's own figures are quoted beside ours, labelled as theirs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import torch

from benchmarks.architectures import cpu_flags
from benchmarks.export import measure
from benchmarks.finetune import FULL_SET, data_for, step_time
from bnnc import __version__
from bnnc.conversion import convert_file
from bnnc.data import sample_data_path
from bnnc.loading import load_checkpoint
from bnnc.measure import needs_reduce_range
from bnnc.planning import PlanRules, Precision, plan
from bnnc.training import FinetuneConfig, finetune

REPO = Path(__file__).resolve().parent.parent
PAPER = {  # Hubara, Courbariaux et al., 2016, table 2: test error after hundreds of epochs (theirs, not ours)
    "mlp": "BNN (Theano) on MNIST: 0.96% test error",
    "vgg": "BNN (Theano) on CIFAR-10: 11.40% test error",
    "resnet": "no ResNet in the paper",
}
TARGETS = {"mlp": 0.5, "vgg": 2.0, "resnet": 3.0}  # accuracy drop targets (points), from the issue


def int8_ends(src: Path) -> PlanRules:
    """``--last int8``, and ``--first int8`` where the default plan keeps the first layer FP32 (a tiny first conv)."""
    model = load_checkpoint(src).model
    first = plan(model, input_shape=(1, 28, 28)).layers[0]
    return PlanRules(first=Precision.INT8 if first.precision is Precision.FP32 else None, last=Precision.INT8)


def run_model(model: str, data: str, epochs: int, threads: list[int], smoke: bool, tmp: Path,
              int8: bool = False) -> dict[str, Any]:
    src = REPO / "sample_models" / f"{model}.pt"
    splits = data_for(src, data, smoke)
    source = FULL_SET if data == "full" or (data == "auto" and FULL_SET.is_dir()) else sample_data_path()
    rules = int8_ends(src) if int8 else None
    converted = convert_file(src, tmp / f"{model}.bnnc", data=source, rules=rules)  # calibrated on the training data
    result = finetune(converted.output, splits, FinetuneConfig(epochs=epochs), tmp / f"{model}.ft.bnnc")
    per_epoch = {r.epoch: r.val_accuracy for r in result.history}
    figures = measure(result.output, src, threads, [1, 64], smoke, tmp)
    steps = step_time(model, steps=3 if smoke else 30)
    drop = (result.fp32_accuracy - figures["accuracy"]["bnnc"]) * 100 if result.fp32_accuracy else None
    return {
        "model": model, "data": splits.source, "epochs": epochs,
        "plan": {la.name: la.precision.value for la in converted.summary.plan.layers},
        "accuracy": {"fp32": result.fp32_accuracy, "before_finetune": result.converted_accuracy,
                     "after_recalibration": result.recalibrated_accuracy,
                     "after_epochs": {str(e): per_epoch[e] for e in (1, 3, 5) if e in per_epoch},
                     "best_epoch": result.best_epoch, "onnx": figures["accuracy"]},
        "drop_pt": drop, "drop_target_pt": TARGETS[model], "finetune_seconds": result.seconds,
        "step_time": steps, "paper": PAPER[model], **{k: figures[k] for k in
                                                      ("bytes", "theoretical_bytes", "latency", "parity", "notes")},
    }


def targets(doc: dict[str, Any]) -> list[str]:
    """The issue's targets against the measured figures: met or missed, and by how much."""
    rows = ["## Targets", "", "| target | measured | |", "|---|---|---|"]

    def row(name: str, value: float, limit: float, fmt: str, higher: bool = True) -> None:
        ok = value >= limit if higher else value <= limit
        rows.append(f"| {name} | {fmt.format(value)} | {'met' if ok else 'missed'} |")

    for r in doc.get("runs", []):
        if r.get("drop_pt") is not None:
            row(f"{r['model']}: accuracy drop ≤ {r['drop_target_pt']} pt", r["drop_pt"], r["drop_target_pt"],
                "{:.2f} pt", higher=False)
    mlp = next((r for r in doc["runs"] if r["model"] == "mlp"), None)
    if mlp:
        b = mlp["bytes"]
        row("mlp: ONNX FP32 ÷ bnnc ≥ 30x", b["fp32"] / b["bnnc"], 30, "{:.1f}x")
        row("mlp: ONNX int8 (static) ÷ bnnc ≥ 7.5x", b["int8"] / b["bnnc"], 7.5, "{:.2f}x")
    for r in doc.get("runs", []):  # stock ONNX Runtime against FP32 and the int8 users deploy
        for setting, lat in r["latency"].items():
            batch = setting.split("batch=")[1]
            bnnc = lat["bnnc"]["median_ms"]
            int8 = min(lat[k]["median_ms"] for k in ("int8", "int8-dynamic") if k in lat)
            which = "the faster of static/dynamic int8" if "int8-dynamic" in lat else "static int8"
            if r["model"] == "mlp":
                limit = 1.3 if batch == "1" else 1.0
                row(f"mlp: {which} ÷ bnnc ≥ {limit}x ({setting.replace(',', ', ')})", int8 / bnnc, limit, "{:.2f}x")
            else:
                row(f"{r['model']}: FP32 ÷ bnnc ≥ 2x ({setting.replace(',', ', ')})", lat["fp32"]["median_ms"] / bnnc,
                    2.0, "{:.2f}x")
                row(f"{r['model']}: {which} ÷ bnnc ≥ 1x ({setting.replace(',', ', ')})", int8 / bnnc, 1.0, "{:.2f}x")
    rows += openvino_targets(doc)
    return rows + [""]


# The OpenVINO issue's targets: (model, batch, against, at least); "fastest" is the fastest of ORT FP32,
# ORT int8 (static, and dynamic where measured) and the FP32 model in OpenVINO at the CPU's default precision.
# "int8" is the faster of ORT's static and dynamic int8 where both were measured.
OPENVINO_TARGETS = [("vgg", b, k, x) for b in ("1", "64") for k, x in (("fp32", 5.0), ("fastest", 1.5))] + [
    ("mlp", "1", "fp32", 10.0), ("mlp", "1", "int8", 3.0), ("mlp", "64", "int8", 1.5),
    ("resnet", "1", "fp32", 3.0), ("resnet", "64", "fp32", 3.0)]


def openvino_targets(doc: dict[str, Any]) -> list[str]:
    """bnnc-openvino against the alternatives, per thread count measured: met or missed, and by how much."""
    rows = []
    for model, batch, against, limit in OPENVINO_TARGETS:
        r = next((r for r in doc["runs"] if r["model"] == model), None)
        for setting, lat in (r or {}).get("latency", {}).items():
            if not setting.endswith(f"batch={batch}") or "bnnc-openvino" not in lat:
                continue
            kinds = {"fastest": ("fp32", "int8", "int8-dynamic", "fp32-openvino"), "int8": ("int8", "int8-dynamic")}
            base = min(lat[k]["median_ms"] for k in kinds.get(against, (against,)) if k in lat)
            value = base / lat["bnnc-openvino"]["median_ms"]
            ok = "met" if value >= limit else f"missed by {limit / value:.2f}x"
            rows.append(f"| {model}: {against} ÷ bnnc-openvino ≥ {limit}x ({setting.replace(',', ', ')}) | "
                        f"{value:.2f}x | {ok} |")
    return rows


def markdown(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    lines = ["# Benchmark results", "",
             f"Measured {env['date']} on {env['platform']} ({env['cpus']} CPUs), Python {env['python']}, "
             f"torch {env['torch']}, onnx {env['onnx']}, ONNX Runtime {env['onnxruntime']}, bnnc {env['bnnc']}. "
             f"CPU: {env.get('cpu', '?')}. "
             f"Command: `{env['command']}`. Accuracy is on the full 10,000-image Fashion-MNIST test set.", "",
             *targets(doc)]
    weights = ", 7-bit weights (no VNNI)" if env.get("int8_reduce_range") else ""
    for r in doc["runs"]:
        a, fp32b = r["accuracy"], r["bytes"]["fp32"]
        after = ", ".join(f"{e} epoch{'s' if e != '1' else ''} {v:.2%}" for e, v in a["after_epochs"].items())
        drop = f"{r['drop_pt']:.2f}" if r["drop_pt"] is not None else "?"
        met = "met" if r["drop_pt"] is not None and r["drop_pt"] <= r["drop_target_pt"] else "missed"
        plan_line = ", ".join(f"{k} {v}" for k, v in r.get("plan", {}).items())
        lines += [f"## {r['model']}", "", f"Plan: {plan_line}.", "",
                  f"Training data: {r['data']}; {r['epochs']} epoch{'s' if r['epochs'] != 1 else ''} in "
                  f"{r['finetune_seconds']:.0f} s.", "",
                  "| accuracy | |", "|---|---:|",
                  f"| FP32 | {a['fp32']:.2%} |", f"| binarized, before fine-tuning | {a['before_finetune']:.2%} |",
                  f"| after recalibration | {a['after_recalibration'] or 0:.2%} |",
                  f"| fine-tuned ({after}) | best epoch {a['best_epoch']} |",
                  f"| bnnc ONNX in ONNX Runtime | {a['onnx']['bnnc']:.2%} |",
                  f"| ORT int8 (static QDQ, per-channel{weights}, calibrated) in ONNX Runtime | "
                  f"{a['onnx']['int8']:.2%} |",
                  *([f"| ORT int8 (dynamic) in ONNX Runtime | {a['onnx']['int8-dynamic']:.2%} |"]
                    if "int8-dynamic" in a["onnx"] else []), "",
                  f"Drop vs FP32: {drop} pt (target ≤ {r['drop_target_pt']} pt: {met}). "
                  f"The paper, for reference (theirs): {r['paper']}.", "",
                  "| ONNX model | bytes | FP32 ÷ this | accuracy |", "|---|---:|---:|---:|"]
        for k, n in r["bytes"].items():
            lines.append(f"| {k} | {n:,} | {fp32b / n:.1f}x | {a['onnx'][k]:.2%} |")
        lines += [f"| theoretical | {r['theoretical_bytes']:,} | {fp32b / r['theoretical_bytes']:.1f}x | |", "",
                  "| ORT latency (median [IQR] ms, FP32 ÷ this) | " + " | ".join(r["bytes"]) + " |",
                  "|---|" + "---:|" * len(r["bytes"])]
        for setting, lat in r["latency"].items():
            base = lat["fp32"]["median_ms"]
            cells = [f"{v['median_ms']:.3f} [{v['q1_ms']:.3f}–{v['q3_ms']:.3f}] {base / v['median_ms']:.2f}x"
                     for v in lat.values()]
            lines.append(f"| {setting.replace(',', ', ')} | " + " | ".join(cells) + " |")
        st = r["step_time"]
        batch = st.get("batch", 128)  # results written before the batch was recorded were timed at 128
        lines += ["", f"Fine-tuning step (batch {batch}): {st['binarized_s'] * 1e3:.1f} ms vs FP32 training step "
                  f"{st['fp32_s'] * 1e3:.1f} ms: {st['ratio']:.2f}x.", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mlp", "vgg", "resnet"], choices=["mlp", "vgg", "resnet"])
    ap.add_argument("--data", choices=["auto", "full", "sample"], default="auto")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch, few timing runs")
    ap.add_argument("--int8-ends", action="store_true",
                    help="the kept last layer (and a kept first layer) at 8 bits: --last int8 [--first int8]")
    ap.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md (e.g. benchmarks/RESULTS)")
    args = ap.parse_args()
    torch.set_num_threads(max(args.threads))
    env = {"date": dt.date.today().isoformat(), "platform": platform.platform(), "cpus": torch.get_num_threads(),
           "cpu": cpu_flags(), "int8_reduce_range": needs_reduce_range(),
           "python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
           "onnxruntime": onnxruntime.__version__, "bnnc": __version__,
           "command": "python -m benchmarks " + " ".join(
               [f"--models {' '.join(args.models)}", f"--data {args.data}", f"--epochs {args.epochs}",
                f"--threads {' '.join(map(str, args.threads))}"] + (["--smoke"] if args.smoke else [])
               + (["--int8-ends"] if args.int8_ends else []))}
    runs = []
    with tempfile.TemporaryDirectory() as d:
        for model in args.models:
            runs.append(run_model(model, args.data, 1 if args.smoke else args.epochs, args.threads, args.smoke, Path(d),
                                  int8=args.int8_ends))
    doc = {"environment": env, "runs": runs}
    text = markdown(doc)
    print(text)
    if args.out:
        args.out.with_suffix(".json").write_text(json.dumps(doc, indent=2))
        args.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
