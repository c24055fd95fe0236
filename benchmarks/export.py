"""Export benchmark: ONNX bytes, accuracy and ONNX Runtime latency — FP32, ORT int8, bnnc — side by side.

    python -m benchmarks.export                      # sample MLP, fine-tuned 3 epochs, batch 1 and 64, 2 threads
    python -m benchmarks.export --models mlp vgg resnet --threads 1 2
    python -m benchmarks.export --smoke              # tiny: keeps the script working in CI

For each model: convert (calibrated on the bundled sample), fine-tune ``--epochs`` epochs, then
export FP32 ONNX (torch.onnx, same settings), ORT int8 the way users deploy it (``int8``: ``quantize_static``
of that FP32 ONNX, QDQ, per-channel int8 weights, uint8 activations calibrated on 512 training images;
``int8-dynamic``: ``quantize_dynamic``, only for a model without convolutions, where it is fast), bnnc
(integer, float input), bnnc ``--uint8-input`` and bnnc ``--float``.
With the openvino package installed, also ``bnnc-openvino`` (the IR whose binary layers run
XNOR-popcount, f32 precision) and ``fp32-openvino`` (the FP32 ONNX converted by OpenVINO, run at
the CPU's default precision: bf16 where the CPU has AMX/AVX512-BF16, as a user would run it).
Latency: median and interquartile range of repeated runs, warm-up excluded, every session with
intra-op spinning off and timed in turn, round after round, so that they share the machine fairly.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import torch

from bnnc.conversion import convert_file
from bnnc.data import Preprocessing, load_data, sample_data_path
from bnnc.export import export_onnx, export_openvino, ov_runtime, to_fp32_onnx
from bnnc.loading import load_checkpoint
from bnnc.measure import CALIBRATION_SAMPLES, has_convolutions, int8_dynamic, int8_static, latencies, onnx_accuracy
from bnnc.training import FinetuneConfig, finetune

REPO = Path(__file__).resolve().parent.parent


def bench(model: str, epochs: int, threads: list[int], batches: list[int], smoke: bool, tmp: Path) -> dict[str, Any]:
    """Convert and fine-tune on the bundled sample, then :func:`measure` the exports."""
    data = sample_data_path()
    src = REPO / "sample_models" / f"{model}.pt"
    converted = convert_file(src, tmp / f"{model}.bnnc", data=data).output
    if epochs:
        splits = load_data(data, preprocessing=None)
        if smoke:
            from torch.utils.data import TensorDataset

            from bnnc.data import DataSplits
            splits = DataSplits(TensorDataset(*(t[:256] for t in splits.train.tensors)),
                                TensorDataset(*(t[:256] for t in splits.val.tensors)), splits.preprocessing, "smoke")
        converted = finetune(converted, splits, FinetuneConfig(epochs=epochs), tmp / f"{model}.ft.bnnc").output
    return {"model": model, "epochs": epochs, **measure(converted, src, threads, batches, smoke, tmp)}


def measure(checkpoint: Path, src: Path, threads: list[int], batches: list[int], smoke: bool,
            tmp: Path) -> dict[str, Any]:
    """Bytes, test accuracy and ORT latency of FP32, ORT int8 and the three bnnc exports of ``checkpoint``."""
    data = sample_data_path()  # its test split is the full 10,000-image Fashion-MNIST test set
    loaded = load_checkpoint(checkpoint)
    shape = loaded.binarized.plan.input_shape
    exports = {"bnnc": {}, "bnnc-uint8": {"uint8_input": True}, "bnnc-float": {"float_ops": True}}
    results = {k: export_onnx(checkpoint, tmp / f"{checkpoint.stem}.{k}.onnx", check_samples=64, overwrite=True, **kw)
               for k, kw in exports.items()}
    blobs: dict[str, Any] = {"fp32": to_fp32_onnx(load_checkpoint(src).model, shape).SerializeToString()}
    train = load_data(data, preprocessing=None).train.tensors[0][:CALIBRATION_SAMPLES].numpy()
    blobs["int8"] = int8_static(blobs["fp32"], train)
    if not has_convolutions(blobs["fp32"]):
        blobs["int8-dynamic"] = int8_dynamic(blobs["fp32"])
    blobs.update({k: r.path.read_bytes() for k, r in results.items()})  # type: ignore[union-attr]
    sizes = {k: len(v) for k, v in blobs.items()}
    if ov_runtime.available():  # XNOR-popcount in OpenVINO, and the FP32 model there at the CPU's default precision
        results["bnnc-openvino"] = export_openvino(checkpoint, tmp / f"{checkpoint.stem}.xml", check_samples=64,
                                                   overwrite=True)
        ir = ov_runtime.IR(*(f.read_bytes() for f in results["bnnc-openvino"].files))
        fp32_ir = ov_runtime.fp32_ir(blobs["fp32"], shape)
        sizes.update({"bnnc-openvino": ir.size, "fp32-openvino": fp32_ir.size})
        sessions = {"bnnc-openvino": (ir, "f32"), "fp32-openvino": (fp32_ir, None)}
    else:
        sessions = {}

    test = load_data(data, preprocessing=None).val.tensors
    n = 512 if smoke else len(test[0])
    x, y = test[0][:n].numpy(), test[1][:n].numpy()
    raw = Preprocessing.from_dict(loaded.preprocessing).pixels(test[0][:n]).numpy()
    inputs = {k: (raw if k == "bnnc-uint8" else x) for k in [*blobs, *sessions]}

    def model(k: str, threads: int | None = None) -> Any:
        if k in sessions:
            return ov_runtime.OpenVINOSession(sessions[k][0], threads=threads, precision=sessions[k][1])
        return blobs[k]

    out: dict[str, Any] = {
        "test_samples": n,
        "theoretical_bytes": results["bnnc"].theoretical_bytes,
        "bytes": sizes,
        "accuracy": {k: onnx_accuracy(model(k), inputs[k], y)[0] for k in inputs},
        "parity": {k: r.parity[0].to_dict() for k, r in results.items()},
        "notes": {k: r.notes for k, r in results.items() if r.notes},
        "latency": {},
    }
    for t in threads:
        for b in batches:
            feeds = {k: v[:b] for k, v in inputs.items()}
            lat = latencies({k: model(k, t) for k in inputs}, feeds, threads=t, rounds=2 if smoke else 8,
                            repeats=3 if smoke else 40)
            out["latency"][f"threads={t},batch={b}"] = {k: v.to_dict() for k, v in lat.items()}
    return out


def render(r: dict[str, Any]) -> str:
    fp32 = r["bytes"]["fp32"]
    lines = [f"## {r['model']} (fine-tuned {r['epochs']} epochs; accuracy on {r['test_samples']} test images)", "",
             "| model | bytes (ONNX, or IR .xml + .bin) | FP32 / this | accuracy |", "|---|---:|---:|---:|"]
    for k, n in r["bytes"].items():
        lines.append(f"| {k} | {n:,} | {fp32 / n:.1f}x | {r['accuracy'][k]:.2%} |")
    lines.append(f"| theoretical (1 bit per binary weight, rest FP32) | {r['theoretical_bytes']:,} | "
                 f"{fp32 / r['theoretical_bytes']:.1f}x | |")
    lines += ["", "| setting | " + " | ".join(r["bytes"]) + " |", "|---|" + "---:|" * len(r["bytes"])]
    for setting, lat in r["latency"].items():
        base = lat["fp32"]["median_ms"]
        cells = [f"{v['median_ms']:.3f} ms ({base / v['median_ms']:.2f}x)" for v in lat.values()]
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mlp"], choices=["mlp", "vgg", "resnet"])
    ap.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs before export")
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch, few timing runs")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(max(args.threads))
    env = {"machine": platform.processor() or platform.machine(), "cpus": torch.get_num_threads(),
           "torch": torch.__version__, "onnx": onnx.__version__,
           "onnxruntime": onnxruntime.__version__}
    runs = []
    with tempfile.TemporaryDirectory() as d:
        for model in args.models:
            r = bench(model, 1 if args.smoke else args.epochs, args.threads, args.batches, args.smoke, Path(d))
            runs.append(r)
            print(render(r), "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
