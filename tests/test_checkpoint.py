"""The checkpoint format is one typed definition (bnnc.checkpoint): what is written reads back as the same
dataclasses, files written by earlier bnnc still load, and another format version is refused by name."""

import dataclasses

import pytest
import torch
from conftest import PRE

from bnnc.checkpoint import FORMAT_VERSION, BinarizedInfo, CalibrationInfo, FinetuneInfo, SourceInfo, decode, encode
from bnnc.conversion import convert_file
from bnnc.errors import ModelLoadError
from bnnc.loading import load_checkpoint
from bnnc.planning import plan
from bnnc.swap import ConvertOptions


def _info(model) -> BinarizedInfo:
    return BinarizedInfo(
        plan=plan(model, input_shape=(1, 28, 28)), options=ConvertOptions(threshold=False),
        source=SourceInfo("/models/m.pt", "ab" * 32, "state dict + --arch"), calibration=CalibrationInfo(512, "d.npz"),
        finetune=FinetuneInfo({"epochs": 2}, 2, 0.875, "/models/m.bnnc", "cd" * 32),
    )


def test_binarized_info_round_trips_through_plain_data(fp32_checkpoint):
    info = _info(load_checkpoint(fp32_checkpoint("mlp")).model)
    raw = encode(info)
    assert raw["finetune"]["from"] == "/models/m.bnnc" and raw["finetune"]["from_sha256"] == "cd" * 32
    assert raw["plan"] == info.plan.to_dict() and raw["options"]["threshold"] is False
    torch.save(raw, "/dev/null")  # plain data only: it reloads with weights_only=True
    assert decode(BinarizedInfo, raw, "binarized") == info


def test_a_version_1_checkpoint_from_before_the_typed_format_still_loads(tmp_path, fp32_checkpoint):
    """The oldest version-1 writer stored no source form, sensitivity, auto plan, fine-tuning or version."""
    converted = convert_file(fp32_checkpoint("mlp", preprocessing=PRE), tmp_path / "m.bnnc").output
    raw = torch.load(converted, weights_only=True)
    for key in ("sensitivity", "auto_plan", "finetune", "bnnc_version", "calibration"):
        raw["binarized"].pop(key)
    raw["binarized"]["source"].pop("form")
    old = tmp_path / "old.bnnc"
    torch.save(raw, old)
    loaded = load_checkpoint(old)
    assert loaded.is_binarized and loaded.binarized.source.form is None and loaded.binarized.finetune is None
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(loaded.model.eval()(x), load_checkpoint(converted).model.eval()(x))


@pytest.mark.parametrize("version, hint", [(FORMAT_VERSION + 1, "upgrade bnnc"), (0, "convert the FP32 model again")])
def test_another_format_version_is_refused_naming_both(tmp_path, fp32_checkpoint, version, hint):
    path = tmp_path / "v.bnnc"
    raw = torch.load(fp32_checkpoint("mlp"), weights_only=True)
    torch.save({**raw, "format_version": version}, path)
    with pytest.raises(ModelLoadError, match=f"format version {version}; this bnnc reads version {FORMAT_VERSION}"
                       ) as info:
        load_checkpoint(path)
    assert hint in str(info.value)


@pytest.mark.parametrize("where, tamper", [
    ("binarized.source.sha256", lambda b: b["source"].__setitem__("sha256", 7)),
    ("binarized.calibration", lambda b: b.__setitem__("calibration", [1, 2])),
    ("binarized.finetune.best_epoch", lambda b: b.__setitem__("finetune", {
        "config": {}, "best_epoch": "two", "best_val_accuracy": 0.5, "from": "x", "from_sha256": "y"})),
    ("binarized.plan", lambda b: b.pop("plan")),
])
def test_a_mistyped_entry_is_one_error_naming_it(tmp_path, fp32_checkpoint, where, tamper):
    converted = convert_file(fp32_checkpoint("mlp", preprocessing=PRE), tmp_path / "m.bnnc").output
    raw = torch.load(converted, weights_only=True)
    tamper(raw["binarized"])
    torch.save(raw, tmp_path / "t.bnnc")
    with pytest.raises(ModelLoadError, match=f"'{where}' entry is malformed"):
        load_checkpoint(tmp_path / "t.bnnc")


def test_every_field_of_the_format_is_written(tmp_path, fp32_checkpoint):
    """The docstring's format and the file agree: every dataclass field is a key, nothing else is."""
    converted = convert_file(fp32_checkpoint("mlp", preprocessing=PRE), tmp_path / "m.bnnc").output
    raw = torch.load(converted, weights_only=True)
    assert set(raw["binarized"]) == {f.name for f in dataclasses.fields(BinarizedInfo)}
    assert set(raw["binarized"]["source"]) == {"path", "sha256", "form"}
