"""``torch.export`` programs (.pt2) as input: loaded safely, graph known, through convert and export."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import SMALL_ARCHS, Payload, build, learnable_npz

from bnnc.conversion import convert_file
from bnnc.errors import ModelLoadError, UntrustedModelError
from bnnc.export import export_onnx
from bnnc.loading import load_checkpoint
from bnnc.planning import PlanRules, Precision
from bnnc.resolve import load_fp32_source


def _export(kind: str, path: Path, dynamic: bool = True) -> Path:
    model = build(kind)
    x = torch.randn(4, 1, 28, 28)
    shapes = {"x": {0: torch.export.Dim("batch")}} if dynamic else None
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=shapes), path)
    return path


@pytest.mark.parametrize("kind", ["cnn", "resnet"])
def test_a_program_loads_as_modules_and_computes_the_same(kind: str, tmp_path: Path):
    loaded = load_checkpoint(_export(kind, tmp_path / "m.pt2"))
    assert loaded.form == "torch.export program" and loaded.input_shape == (1, 28, 28)
    convs = [n for n, m in loaded.model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [n for n, m in build(kind).named_modules() if isinstance(m, torch.nn.Conv2d)]
    x = torch.randn(9, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.eval()(x), build(kind)(x))


def test_a_program_converts_reloads_without_trust_and_exports_with_parity(tmp_path: Path):
    src = _export("resnet", tmp_path / "r.pt2")
    data = learnable_npz(tmp_path, 256, 128)
    result = convert_file(src, tmp_path / "r.bnnc", data=data, rules=PlanRules(min_params=0, min_fan_in=0))
    layers = {layer.name: layer.precision for layer in result.summary.plan.layers}
    assert layers["stem.0"] is Precision.WEIGHTS and Precision.BINARY in layers.values()
    reloaded = load_checkpoint(result.output)  # rebuilt from the program: no --trust-model needed
    assert reloaded.is_binarized
    parity = export_onnx(result.output, tmp_path / "r.onnx", data=data).parity[0]
    assert parity.argmax_agreement == 1.0 and parity.mismatched == parity.at_ties, parity


def test_a_program_or_a_pickled_module_teaches_a_model_converted_from_a_state_dict(tmp_path: Path):
    """``--teacher`` may be a file that carries its own model: the architecture recorded for a state dict source
    rebuilds state dicts only, never such a file (it did, and each was refused as given with --arch)."""
    ref, kwargs = SMALL_ARCHS["cnn"]
    torch.save(build("cnn").state_dict(), tmp_path / "sd.pt")
    loaded = load_checkpoint(convert_file(tmp_path / "sd.pt", tmp_path / "m.bnnc", arch=ref, arch_kwargs=kwargs).output)
    assert load_fp32_source(loaded, _export("cnn", tmp_path / "t.pt2")).form == "torch.export program"
    torch.save(build("cnn"), tmp_path / "whole.pt")
    assert load_fp32_source(loaded, tmp_path / "whole.pt", trust_model=True).form == "pickled nn.Module (trusted)"


@pytest.mark.parametrize("kind", ["cnn", "resnet", "mlp", "torchvision-resnet18"])
def test_a_program_exports_the_graph_its_eager_model_exports(kind: str, tmp_path: Path):
    """Activations, pools and flattens come back as the modules they were (in-place ReLUs too, which
    torchvision's nets use and an exported program keeps), so the same chains fold into integer
    thresholds, and the file is byte for byte as large."""
    import families

    from bnnc.conversion import convert
    from bnnc.export import to_onnx
    from bnnc.planning import plan

    eager = families.resnet18().eval() if kind.startswith("torchvision") else build(kind)
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(eager, (torch.randn(4, 1, 28, 28),),
                                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}}), path)
    results = []
    for model in (eager, load_checkpoint(path).model):
        binary = convert(model, plan(model, PlanRules(min_params=0, min_fan_in=0), input_shape=(1, 28, 28)))
        proto, lowered = to_onnx(binary, (1, 28, 28))
        results.append((sum(s.fused is not None for s in lowered.specs), len(lowered.specs),
                        sorted(n.op_type for n in proto.graph.node)))
    assert results[0][0] > 0 and results[0] == results[1]


def test_a_program_for_one_batch_size_is_refused(tmp_path: Path):
    with pytest.raises(ModelLoadError, match="exported for batches of exactly 4.*Dim"):
        load_checkpoint(_export("mlp", tmp_path / "static.pt2", dynamic=False))


def _rewrite(src: Path, dst: Path, change) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, change(item.filename, zin.read(item.filename)))


def test_a_program_with_pickled_payloads_is_refused_and_never_runs(tmp_path: Path):
    src = _export("mlp", tmp_path / "m.pt2")
    marker = tmp_path / "pwned"
    evil = io.BytesIO()
    torch.save(Payload(marker), evil)

    def pickled_weight(name: str, data: bytes) -> bytes:
        if name.endswith("_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"]))
            config["config"][first]["use_pickle"] = True
            return json.dumps(config).encode()
        return evil.getvalue() if name.endswith("/weight_0") else data

    def pickled_inputs(name: str, data: bytes) -> bytes:
        return evil.getvalue() if "/data/sample_inputs/" in name else data

    for change, message in ((pickled_weight, "pickled payload"), (pickled_inputs, "example inputs")):
        bad = tmp_path / f"{change.__name__}.pt2"
        _rewrite(src, bad, change)
        with pytest.raises(UntrustedModelError, match=message):
            load_checkpoint(bad)
        assert not marker.exists()
    shutil.copy(src, tmp_path / "copy.pt2")
    assert load_checkpoint(tmp_path / "copy.pt2").form == "torch.export program"


def test_an_archive_layout_bnnc_does_not_know_is_refused(tmp_path: Path):
    """Fail closed: without the configs bnnc checks, the archive is not handed to torch.export.load."""
    src = _export("mlp", tmp_path / "m.pt2")
    odd = tmp_path / "odd.pt2"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(odd, "w") as zout:
        for item in zin.infolist():
            if not item.filename.endswith("_weights_config.json"):
                zout.writestr(item, zin.read(item.filename))
    with pytest.raises(UntrustedModelError, match="layout bnnc doesn't know"):
        load_checkpoint(odd)
