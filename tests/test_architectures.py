"""Real architectures through convert -> finetune -> export with parity (see tests/archs.py).

Conv1d, grouped and depthwise convolutions (FP32 by default, binary by choice), Linear layers on
3-D inputs, max/average pooling, Flatten, Dropout, concatenation and residual additions.
"""

from __future__ import annotations

from pathlib import Path

import archs
import numpy as np
import pytest
from archs import Branches, TokenMLP

from bnnc.checkpoint import save_checkpoint
from bnnc.conversion import convert_file
from bnnc.export import export_onnx
from bnnc.loading import load_checkpoint
from bnnc.planning import PlanRules, Precision
from bnnc.training import FinetuneConfig, finetune

CASES = {
    "conv1d": ("archs:conv1d_net", archs.conv1d_net(), (1, 64), PlanRules(min_params=0, min_fan_in=0)),
    "grouped-depthwise-fp32": ("archs:grouped_net", archs.grouped_net(), (1, 16, 16),
                               PlanRules(min_params=0, min_fan_in=0)),
    "grouped-depthwise-binary": ("archs:grouped_net", archs.grouped_net(), (1, 16, 16),
                                 PlanRules(min_params=0, min_fan_in=0, binary=("6",))),
    "linear-on-3d": ("archs:TokenMLP", TokenMLP(), (8, 16), PlanRules(min_params=0, min_fan_in=0)),
    "concat-residual": ("archs:Branches", Branches(), (1, 16, 16), PlanRules(min_params=0, min_fan_in=0)),
}


def _learnable(path: Path, shape: tuple[int, ...], classes: int = 4, n: int = 768) -> Path:
    """Float samples of ``shape``: noise plus a fixed random pattern per class."""
    rng = np.random.default_rng(0)
    patterns = rng.standard_normal((classes, *shape)).astype(np.float32)
    y = rng.integers(0, classes, n)
    x = (rng.standard_normal((n, *shape)) + 1.5 * patterns[y]).astype(np.float32)
    split = n * 2 // 3
    np.savez(path, x_train=x[:split], y_train=y[:split], x_test=x[split:], y_test=y[split:])
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_convert_finetune_export_with_parity(name: str, tmp_path: Path):
    ref, model, shape, rules = CASES[name]
    fp32 = tmp_path / "fp32.pt"
    save_checkpoint(fp32, state_dict=model.state_dict(), arch=ref)
    data = _learnable(tmp_path / "d.npz", shape)

    converted = convert_file(fp32, tmp_path / "m.bnnc", rules=rules, input_shape=shape, data=data)
    precisions = {layer.name: layer.precision for layer in converted.summary.plan.layers}
    assert Precision.BINARY in precisions.values(), precisions
    if name == "grouped-depthwise-fp32":
        assert precisions["6"] is Precision.FP32  # depthwise: kept unless asked
    if name == "grouped-depthwise-binary":
        assert precisions["6"] is Precision.BINARY

    tuned = finetune(converted.output, data, FinetuneConfig(epochs=3, batch_size=32, distill=False),
                     tmp_path / "ft.bnnc")
    assert tuned.best_accuracy >= max(tuned.converted_accuracy + 0.1, 0.4), tuned  # 4 classes: chance is 0.25

    result = export_onnx(tuned.output, tmp_path / "m.onnx", data=data, check_samples=256)
    parity = result.parity[0]
    assert parity.argmax_agreement == 1.0 and parity.mismatched == parity.at_ties, parity
    assert parity.max_rel_diff <= 1e-4 or parity.at_ties > 0, parity
    assert load_checkpoint(tuned.output).is_binarized
