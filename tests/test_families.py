"""The architecture families users bring, through the most common path: a trained model's plain state dict,
``bnnc compress SD --arch families:NAME --data D`` with default options (distillation on) — convert,
fine-tune, export with its parity check, report.

Each family (small widths, :mod:`families`) is first trained in FP32 for a few epochs on generated data
a model can learn (the class sets the brightness of one pixel row; chance is 10%). Checked: the command
succeeds, the exported ONNX predicts exactly as PyTorch on every test sample, the plan keeps real-valued
what it should, and the binarized model's accuracy after 2 epochs (batch 32) is at least 30% — 20 points
above chance. Measured here: 99-100% for ResNet-18, MobileNet-V2/V3, ShuffleNet-V2, EfficientNet-B0,
RegNet, ConvNeXt, ViT (both) and the Mixer; 77% ResNet-34, 84% VGG-11; 39.5% VGG-16 (FP32 91%), the slowest
to recover: a plain stack of 13 binary convolutions.
"""

from __future__ import annotations

import json
from pathlib import Path

import families
import pytest
import torch
from conftest import learnable_npz
from families import FAMILIES
from typer.testing import CliRunner

import bnnc.reporting.collect
from bnnc.cli import app
from bnnc.data import load_data

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    d = tmp_path_factory.mktemp("families")
    return {side: learnable_npz(d, 2048, 256, side, f"d{side}.npz") for side in sorted(set(FAMILIES.values()))}


def _trained(name: str, data: Path, folder: Path) -> Path:
    """The family trained in FP32 for a few epochs (on the data normalised as bnnc derives it for a model
    without recorded preprocessing), saved as a plain state dict."""
    torch.manual_seed(0)
    model = getattr(families, name)()
    side = FAMILIES[name]
    x, y = load_data(data, input_shape=(1, side, side)).train.tensors
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(3):
        for i in range(0, len(x), 64):
            loss = torch.nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    path = folder / f"{name}_sd.pt"
    torch.save(model.eval().state_dict(), path)
    return path


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_through_compress_from_a_state_dict(name: str, data: dict[int, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    sd = _trained(name, data[FAMILIES[name]], tmp_path)
    out = tmp_path / "out"
    # the report's C section is left out (as on a machine without a compiler): every family's C export is checked
    # against torch in test_c_export.py, and compiling it again here cost CI up to 7 s a family
    monkeypatch.setattr("bnnc.reporting.collect.find_compiler", lambda: None)
    # and its latencies are timed once, not 5 rounds of 20 (no figure is asserted here; the report's own tests
    # time): up to 4 s a family of CI's 15 minutes
    timed = bnnc.reporting.collect.latencies
    monkeypatch.setattr("bnnc.reporting.collect.latencies",
                        lambda *a, **k: timed(*a, **{**k, "rounds": 1, "repeats": 2}))
    r = runner.invoke(app, ["compress", str(sd), "--arch", f"families:{name}", "--data", str(data[FAMILIES[name]]),
                            "--epochs", "2", "--batch-size", "32", "-o", str(out), "--batch", "8"],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    assert report["accuracy"]["onnx_torch_agreement"] == 1.0
    assert report["accuracy"]["bnnc_onnx"] >= 0.3, report["accuracy"]
    assert report["size"]["theoretical_bytes"] <= report["size"]["bnnc_onnx_bytes"]
    precisions = {layer["name"]: layer for layer in report["layers"]}
    model = getattr(families, name)()
    for layer_name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d) and module.groups == module.in_channels > 1:
            assert precisions[layer_name]["precision"] == "fp32", layer_name  # depthwise
        if isinstance(module, families.SqueezeExcitation):
            assert precisions[f"{layer_name}.fc1"]["precision"] == "fp32"  # a squeeze-excitation gate
    assert any(layer["precision"] == "binary" for layer in report["layers"])
