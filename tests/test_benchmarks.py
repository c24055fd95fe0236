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
