"""The C export side by side with ONNX Runtime (FP32, int8) and the OpenVINO export: size, flash/RAM, batch-1
latency on one thread, on the sample models (converted with their default plan; latency doesn't depend on
fine-tuning). Prints a Markdown table and the CPU flags it ran on.

    python -m benchmarks.c [--models mlp vgg resnet] [--samples 2000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.architectures import cpu_flags
from bnnc import convert_file, report
from bnnc.data import sample_data_path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["mlp", "vgg", "resnet"])
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    data = sample_data_path()
    print(f"CPU: {cpu_flags()}; 1 thread, batch 1\n")
    print("| model | ORT FP32 ms | ORT int8 ms | bnnc OpenVINO ms | bnnc C ms | C vs int8 | C vs OpenVINO | "
          "C weights | M4 flash | M4 RAM | C = torch (argmax) | C accuracy (converted, not fine-tuned) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            ckpt = convert_file(ROOT / "sample_models" / f"{name}.pt", Path(tmp) / f"{name}.bnnc", data=data).output
            d = report(ckpt, data, batches=(1,), threads=1, samples=args.samples).to_dict()
            lat, c = d["latency"]["by_batch"]["1"], d["c"]
            int8 = lat["int8" if lat["int8_fastest"] == "static" else "int8_dynamic"]["median_ms"]
            ov = lat.get("bnnc_openvino", {}).get("median_ms")
            m4 = c.get("cortex_m4") or {}
            print(f"| {name} | {lat['fp32']['median_ms']:.3f} | {int8:.3f} ({lat['int8_fastest']}) | "
                  f"{ov:.3f} | {c['latency_batch1_ms']:.3f} | {c['speedup_vs_int8']:.2f}x | "
                  f"{(c.get('speedup_vs_openvino') or float('nan')):.2f}x | {c['weight_bytes']:,} | "
                  f"{m4.get('flash', 0):,} | {m4.get('ram', 0):,} | "
                  f"{c['torch_agreement']:.2%} of {d['data']['samples']:,} | "
                  f"{c['accuracy']:.2%} |")


if __name__ == "__main__":
    main()
