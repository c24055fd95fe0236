"""The benchmark scripts run (tiny sizes); their figures are never asserted."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_finetune_benchmark_smoke(tmp_path):
    out = tmp_path / "f.json"
    for extra in ([], ["--step-time"]):
        subprocess.run([sys.executable, "-m", "benchmarks.finetune", "--smoke", "--models", "mlp", "--data", "sample",
                        "--json", str(out), *extra], cwd=REPO, check=True, capture_output=True)
        runs = json.loads(out.read_text())["runs"]
        assert runs and runs[0]["model"] == "mlp"


def test_export_benchmark_smoke(tmp_path):
    out = tmp_path / "e.json"
    subprocess.run([sys.executable, "-m", "benchmarks.export", "--smoke", "--batches", "1", "--json", str(out)],
                   cwd=REPO, check=True, capture_output=True)
    run = json.loads(out.read_text())["runs"][0]
    assert set(run["bytes"]) == {"fp32", "int8", "int8-dynamic", "bnnc", "bnnc-uint8", "bnnc-float",
                                "bnnc-openvino", "fp32-openvino"}
    assert set(run["latency"]["threads=2,batch=1"]) == set(run["bytes"])


def test_benchmarks_entry_point_smoke(tmp_path):
    out = tmp_path / "results"
    subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--models", "mlp", "--threads", "2", "--data",
                    "sample", "--out", str(out), "--int8-ends"], cwd=REPO, check=True, capture_output=True)
    doc = json.loads(out.with_suffix(".json").read_text())
    run = doc["runs"][0]
    assert run["model"] == "mlp" and "sample" in run["data"]
    assert {"fp32", "before_finetune", "after_epochs", "onnx"} <= set(run["accuracy"])
    assert set(run["bytes"]) == {"fp32", "int8", "int8-dynamic", "bnnc", "bnnc-uint8", "bnnc-float",
                                "bnnc-openvino", "fp32-openvino"}
    assert "threads=2,batch=64" in run["latency"] and run["step_time"]["ratio"] > 0
    md = out.with_suffix(".md").read_text()
    assert "Training data:" in md and "theirs" in md and doc["environment"]["onnxruntime"] in md
    assert run["plan"]["classifier"] == "int8" and "classifier int8" in md  # --int8-ends: the kept last layer at 8 bits
