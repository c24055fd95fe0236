"""Per-layer sensitivity and the automatic plan under a size or accuracy budget."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SMALL_ARCHS, build
from typer.testing import CliRunner

from bnnc.checkpoint import save_checkpoint
from bnnc.cli import app
from bnnc.conversion import ConvertOptions, convert, convert_file
from bnnc.data import load_data
from bnnc.errors import PlanError
from bnnc.planning import PlanRules, Precision, plan
from bnnc.sensitivity import Budget, auto_plan, sensitivity
from bnnc.summary import model_bytes

runner = CliRunner()


def _subtle(path: Path, n_train: int = 2048, n_test: int = 512) -> Path:
    """Like conftest's learnable data, but the class's row is only a little brighter than the noise:
    a trained FP32 model gets ~94%, and binarizing a layer visibly costs accuracy."""
    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 200, (n, 28, 28))
        x[np.arange(n), y * 2] += 50
        return x.clip(0, 255).astype(np.uint8), y

    (x_train, y_train), (x_test, y_test) = split(n_train), split(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The small MLP trained on :func:`_subtle` data, so binarizing costs something."""
    d = tmp_path_factory.mktemp("sens")
    data = _subtle(d / "d.npz")
    splits = load_data(data, input_shape=(1, 28, 28))
    torch.manual_seed(0)
    model = build("mlp").train()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    x, y = splits.train.tensors
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    ref, kwargs = SMALL_ARCHS["mlp"]
    path = d / "fp32.pt"
    save_checkpoint(path, state_dict=model.state_dict(), arch=ref, arch_kwargs=kwargs,
                    preprocessing={**splits.preprocessing.to_dict(), "class_names": [str(i) for i in range(10)]})
    return path, data


def _accuracy_alone(net, splits, samples: int) -> float:
    """Accuracy of ``net`` after calibration on 4 training batches of 256, on the first validation samples."""
    from bnnc.calibrate import calibrate_thresholds

    loader = torch.utils.data.DataLoader(splits.train, batch_size=256, shuffle=True,
                                         generator=torch.Generator().manual_seed(1))
    calibrate_thresholds(net, loader, 4, batchnorm=True)
    x, y = splits.val.tensors
    with torch.no_grad():
        return float((net.eval()(x[:samples]).argmax(1) == y[:samples]).float().mean())


def _setup(trained):
    from bnnc.loading import load_checkpoint

    path, data = trained
    loaded = load_checkpoint(path)
    splits = load_data(data, preprocessing=None, input_shape=(1, 28, 28))
    the_plan = plan(loaded.model, PlanRules(min_params=0, min_fan_in=0), input_shape=(1, 28, 28))
    return loaded.model.eval(), splits, the_plan


def test_sensitivity_measures_every_binarized_layer_alone(trained):
    model, splits, the_plan = _setup(trained)
    sens = sensitivity(model, splits, the_plan, samples=256)
    names = [layer.name for layer in the_plan.layers if layer.precision is not Precision.FP32]
    assert [s.name for s in sens.layers] == names
    assert sens.fp32_accuracy > 0.85 and sens.samples == 256
    first = sens.layers[0]  # measured independently: that layer alone binarized, the rest FP32
    alone = convert(model, replace(the_plan, layers=tuple(
        layer if layer.name == first.name or layer.precision is Precision.FP32
        else replace(layer, precision=Precision.FP32) for layer in the_plan.layers)))
    assert first.accuracy == pytest.approx(_accuracy_alone(alone, splits, 256), abs=0.03)
    assert max(s.accuracy_drop for s in sens.layers) > 0.01  # binarizing a trained layer costs accuracy


def test_auto_plan_meets_the_accuracy_budget_and_keeps_the_sensitive_layers(trained):
    model, splits, the_plan = _setup(trained)
    sens = sensitivity(model, splits, the_plan, samples=256)
    strict = auto_plan(model, splits, the_plan, Budget(max_accuracy_drop=0.0), measured=sens, samples=256)
    assert strict.accuracy_drop <= 0.0
    for s in sens.layers:
        if s.accuracy_drop > 0:
            assert s.name in strict.kept  # binarized alone it already costs accuracy
    loose = auto_plan(model, splits, the_plan, Budget(max_accuracy_drop=1.0), measured=sens, samples=256)
    assert loose.kept == () and loose.plan == the_plan


def test_auto_plan_meets_a_size_target_least_sensitive_first(trained):
    model, splits, the_plan = _setup(trained)
    sens = sensitivity(model, splits, the_plan, samples=256)
    least = min(sens.layers, key=lambda s: (s.accuracy_drop, -s.params))
    target = model_bytes(model) - least.bytes_saved // 2  # one layer is enough
    result = auto_plan(model, splits, the_plan, Budget(target_bytes=target), measured=sens, samples=256)
    assert result.bytes <= target
    assert [n for n in (s.name for s in sens.layers) if n not in result.kept] == [least.name]
    assert result.plan[least.name].precision is the_plan[least.name].precision
    with pytest.raises(PlanError, match="no plan reaches 10 bytes"):
        auto_plan(model, splits, the_plan, Budget(target_bytes=10), measured=sens, samples=256)


def test_budget_needs_a_goal():
    with pytest.raises(PlanError, match="target size or a maximum accuracy drop"):
        Budget()


def test_convert_cli_sensitivity_and_auto_plan(trained, tmp_path):
    path, data = trained
    out = tmp_path / "auto.bnnc"
    r = runner.invoke(app, ["convert", str(path), "-o", str(out), "--data", str(data), "--min-params", "0",
                            "--max-accuracy-drop", "0", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert {s["name"] for s in doc["sensitivity"]["layers"]} >= set(doc["auto_plan"]["kept"])
    saved = torch.load(out, weights_only=True)["binarized"]
    assert saved["auto_plan"]["max_accuracy_drop"] == 0.0
    kept = {x["name"]: x for x in saved["plan"]["layers"] if x["name"] in doc["auto_plan"]["kept"]}
    assert all(x["precision"] == "fp32" and "kept FP32" in x["reason"] for x in kept.values())

    r = runner.invoke(app, ["convert", str(path), "-o", str(tmp_path / "s.bnnc"), "--data", str(data),
                            "--sensitivity"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "Sensitivity: each layer binarized alone" in r.stdout
    for args, message in ((["--sensitivity"], "needs data"), (["--target-size", "lots"], "not a size")):
        r = runner.invoke(app, ["convert", str(path), "-o", str(tmp_path / "x.bnnc"), *args])
        assert r.exit_code == 2 and message in r.stderr, r.output


def test_convert_file_api_records_the_sensitivity(trained, tmp_path):
    path, data = trained
    result = convert_file(path, tmp_path / "m.bnnc", data=data, rules=PlanRules(min_params=0, min_fan_in=0),
                          options=ConvertOptions(), measure_sensitivity=True)
    assert result.sensitivity is not None and result.auto is None
    saved = torch.load(tmp_path / "m.bnnc", weights_only=True)["binarized"]
    assert saved["sensitivity"]["fp32_accuracy"] == result.sensitivity.fp32_accuracy
