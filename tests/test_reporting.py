"""bnnc.report / bnnc.compress: the schema, the checks, the renderings, and refusals."""

from __future__ import annotations

import json

import onnx
import pytest
from conftest import PRE, learnable_npz

from bnnc.config import ConfigError, check, load_config, merge
from bnnc.conversion import convert_file
from bnnc.errors import OutputError
from bnnc.export import export_onnx
from bnnc.pipeline import compress
from bnnc.reporting import Limits, ReportError, report
from bnnc.training import FinetuneConfig

FAST = {"batches": (1, 8), "rounds": 1, "repeats": 2, "samples": 64}



@pytest.fixture
def converted(tmp_path, fp32_checkpoint):
    data = learnable_npz(tmp_path, 256, 64)
    model = convert_file(fp32_checkpoint("mlp", preprocessing=PRE), tmp_path / "m.bnnc", data=data).output
    return model, data


def test_accuracy_by_layer_when_convert_measured_it(tmp_path, fp32_checkpoint):
    """``convert --sensitivity`` records each layer's accuracy drop binarized alone; the report shows it by layer
    (and null for a checkpoint converted without it, as the other tests' is)."""
    data = learnable_npz(tmp_path, 256, 64)
    result = convert_file(fp32_checkpoint("mlp", preprocessing=PRE), tmp_path / "m.bnnc", data=data,
                          measure_sensitivity=True)
    measured = {s.name: s.accuracy_drop * 100 for s in result.sensitivity.layers}
    d = report(result.output, data, openvino=False, **FAST).to_dict()
    shown = {la["name"]: la["drop_alone_pt"] for la in d["layers"]}
    assert shown.pop("classifier") is None and shown == pytest.approx(measured)  # the layer kept FP32: not measured
    assert "drop alone (pt)" in report(result.output, data, openvino=False, **FAST).to_markdown()


def test_report_schema_is_complete_and_consistent(converted):
    model, data = converted
    rep = report(model, data, limits=Limits(min_compression=2.0), **FAST)
    d = json.loads(rep.to_json())
    assert d["schema"] == "bnnc-report" and d["schema_version"] == 5
    for section, keys in {
        "size": ["fp32_onnx_bytes", "int8_onnx_bytes", "bnnc_onnx_bytes", "theoretical_bytes", "compression_vs_fp32",
                 "compression_vs_int8"],
        "accuracy": ["fp32", "binarized_torch", "bnnc_onnx", "int8_onnx", "drop_pt", "onnx_torch_agreement"],
        "totals": ["params", "binary_params", "macs", "binary_mac_share"],
    }.items():
        assert set(keys) <= set(d[section]), section
    s = d["size"]
    assert s["compression_vs_fp32"] == pytest.approx(s["fp32_onnx_bytes"] / s["bnnc_onnx_bytes"])
    assert s["fp32_onnx_bytes"] > s["int8_onnx_bytes"] > s["bnnc_onnx_bytes"]
    a = d["accuracy"]
    assert a["drop_pt"] == pytest.approx((a["fp32"] - a["bnnc_onnx"]) * 100)
    assert a["onnx_torch_agreement"] == 1.0 and a["bnnc_onnx"] == a["binarized_torch"]
    assert set(d["latency"]["by_batch"]) == {"1", "8"}
    # the int8 column is ORT's static quantization; an MLP (no convolutions) also gets dynamic int8, and the
    # speedup is against the faster of the two
    assert d["int8"]["baseline"].startswith("ORT static int8") and d["int8"]["dynamic_measured"]
    assert d["int8"]["calibration_samples"] == 256 and "int8_dynamic_onnx_bytes" in s and "int8_dynamic_onnx" in a
    for lat in d["latency"]["by_batch"].values():
        assert lat["speedup_vs_fp32"] == pytest.approx(lat["fp32"]["median_ms"] / lat["bnnc"]["median_ms"])
        int8 = min(lat["int8"]["median_ms"], lat["int8_dynamic"]["median_ms"])
        assert lat["speedup_vs_int8"] == pytest.approx(int8 / lat["bnnc"]["median_ms"])
        assert lat["int8_fastest"] == ("static" if lat["int8"]["median_ms"] == int8 else "dynamic")
    assert [la["name"] for la in d["layers"]] == ["features.1", "features.4", "classifier"]
    # size per layer, FP32 against what the bnnc ONNX stores for it: 1 bit a weight plus a few values per output
    # for the binary layers (thresholds), the parameters as they are for the one kept
    first, hidden, last = d["layers"]
    fp32_bytes = [784 * 64 * 4, 64 * 48 * 4, (48 * 10 + 10) * 4]  # no biases before a BatchNorm
    assert [la["fp32_bytes"] for la in d["layers"]] == fp32_bytes
    for la in (first, hidden):
        outputs = la["params"] // (784 if la is first else 64)
        assert la["params"] / 8 < la["bytes"] <= la["params"] / 8 + 8 * outputs + 64, la
    assert last["bytes"] == last["fp32_bytes"] and sum(la["bytes"] for la in d["layers"]) <= s["theoretical_bytes"]
    assert "| features.4 | Linear | binary | 3,072 | 1 | 3,072 | 12,288 |" in rep.to_markdown()
    assert all(la["drop_alone_pt"] is None for la in d["layers"])  # convert measured no sensitivity
    ov = d["openvino"]  # the test extras install openvino: measured by default
    assert ov["xnor_layers"] == 1 and ov["accuracy"]["torch_agreement"] == 1.0
    from bnnc.export.ctoolchain import find_compiler

    c = d["c"]  # measured wherever a C compiler is
    if find_compiler() is None:
        assert c is None
    else:
        assert c["torch_agreement"] == 1.0 and c["accuracy"] == a["binarized_torch"]
        assert c["object"]["flash"] >= c["weight_bytes"] > 0 and c["latency_batch1_ms"] > 0
        one = d["latency"]["by_batch"]["1"]
        assert c["speedup_vs_fp32"] == pytest.approx(one["fp32"]["median_ms"] / c["latency_batch1_ms"])
        assert "## C" in rep.to_markdown()
    assert ov["accuracy"]["bnnc"] == a["binarized_torch"]
    for lat in d["latency"]["by_batch"].values():
        fastest = min(lat[k]["median_ms"] for k in ("fp32", "int8", "int8_dynamic", "fp32_openvino"))
        ov_ms = lat["bnnc_openvino"]["median_ms"]
        assert lat["openvino_speedup_vs_fastest_alternative"] == pytest.approx(fastest / ov_ms)
    assert d["checks"] == [{"name": "compression_vs_fp32", "value": s["compression_vs_fp32"], "limit": 2.0,
                            "op": ">=", "passed": True}] and d["passed"]
    md = rep.to_markdown()  # the Markdown shows the same figures
    assert f"{s['compression_vs_fp32']:.1f}x smaller than FP32" in md and "✅ pass" in md
    assert f"{a['bnnc_onnx']:.2%}" in md and "| features.4 | Linear | binary |" in md
    assert f"{ov['accuracy']['bnnc']:.2%} (same prediction as PyTorch on 100.00%)" in md
    page = rep.to_html()
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64,") >= 2


def test_failing_threshold_is_named(converted):
    model, data = converted
    rep = report(model, data, limits=Limits(min_compression=1e6, max_accuracy_drop=100), **FAST)
    assert not rep.passed and [c.name for c in rep.failed] == ["compression_vs_fp32"]
    d = rep.to_dict()
    assert d["passed"] is False
    assert {c["name"]: c["passed"] for c in d["checks"]} == {"accuracy_drop_pt": True, "compression_vs_fp32": False}
    assert "❌ FAIL" in rep.to_markdown() and "class='fail'" in rep.to_html()


def test_the_openvino_gate_checks_the_irs_speed_and_fails_where_it_was_not_measured(converted, monkeypatch):
    """``--min-openvino-speedup``: FP32 (ORT) / bnnc IR latency, the worst batch; a gate that can't be measured is
    refused before measuring (``--no-openvino``), and an IR that failed to export fails it ("not measured")."""
    import bnnc.reporting.collect as collect
    from bnnc.errors import BnncError
    from bnnc.export import ExportError

    model, data = converted
    rep = report(model, data, limits=Limits(min_openvino_speedup=1e-6), **FAST)
    rows = rep.to_dict()["latency"]["by_batch"].values()
    assert rep.passed and rep.checks[0].value == min(b["openvino_speedup_vs_fp32"] for b in rows)
    rep = report(model, data, limits=Limits(min_openvino_speedup=1e6, max_accuracy_drop=100), **FAST)
    assert [c.name for c in rep.failed] == ["openvino_speedup_vs_fp32"]
    with pytest.raises(BnncError, match="--no-openvino"):
        report(model, data, openvino=False, limits=Limits(min_openvino_speedup=1.0), **FAST)

    def unexportable(*args, **kwargs):
        raise ExportError("no IR today")

    monkeypatch.setattr(collect.ov_export, "to_openvino", unexportable)
    rep = report(model, data, limits=Limits(min_openvino_speedup=1e-6), **FAST)
    assert not rep.passed and rep.checks[0].value is None and "not measured" in rep.checks[0].describe()
    assert "| openvino_speedup_vs_fp32 | not measured |" in rep.to_markdown() and "not measured" in rep.to_html()
    assert rep.to_dict()["checks"][0]["value"] is None


def test_report_refuses_an_onnx_from_another_checkpoint(tmp_path, converted, fp32_checkpoint):
    model, data = converted
    other = convert_file(fp32_checkpoint("mlp", name="other.pt", preprocessing=PRE), tmp_path / "o.bnnc",
                         data=data, calibration_batches=1).output
    onnx_path = export_onnx(other, tmp_path / "o.onnx", check=False).path
    with pytest.raises(ReportError, match="different checkpoint"):
        report(model, data, onnx_path=onnx_path, **FAST)
    foreign = tmp_path / "foreign.onnx"
    proto = onnx.load(onnx_path)
    del proto.metadata_props[:]
    onnx.save(proto, foreign)
    with pytest.raises(ReportError, match="not written by bnnc"):
        report(model, data, onnx_path=foreign, **FAST)


def test_compress_writes_everything_into_one_folder(tmp_path, fp32_checkpoint):
    data = learnable_npz(tmp_path, 256, 64)
    src = fp32_checkpoint("mlp", preprocessing=PRE)
    out = tmp_path / "out"
    result = compress(src, data, out, config=FinetuneConfig(epochs=1, batch_size=64),
                      report_options=FAST)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["mlp.bnnc", "mlp.finetuned.bnnc", "mlp.finetuned.bnnc.state", "mlp.finetuned.history.json",
                     "mlp.onnx", "report.html", "report.json", "report.md"]
    d = json.loads((out / "report.json").read_text())
    assert d["finetune"]["epochs"][0]["epoch"] == 1 and d["model"]["onnx_path"] == str(out / "mlp.onnx")
    assert result.report.passed
    with pytest.raises(OutputError, match="already exists"):  # nothing redone or overwritten without overwrite
        compress(src, data, out, config=FinetuneConfig(epochs=1))


@pytest.mark.parametrize("folder_exists", [False, True])
def test_a_failed_compress_removes_what_it_created(tmp_path, fp32_checkpoint, monkeypatch, folder_exists):
    from bnnc import pipeline
    from bnnc.export import ExportError

    data = learnable_npz(tmp_path, 256, 64)
    src = fp32_checkpoint("mlp", preprocessing=PRE)
    out = tmp_path / "out"
    if folder_exists:
        out.mkdir()
        (out / "notes.txt").write_text("the user's")

    def failing_export(*args, **kwargs):
        raise ExportError("export broke")

    monkeypatch.setattr(pipeline, "export_onnx", failing_export)
    with pytest.raises(ExportError):
        compress(src, data, out, config=FinetuneConfig(epochs=1, batch_size=64), report_options=FAST)
    if folder_exists:
        assert [p.name for p in out.iterdir()] == ["notes.txt"]  # converted and fine-tuned files gone, theirs kept
    else:
        assert not out.exists()


# ----------------------------------------------------------------------------- configuration


def test_config_from_bnnc_toml_and_pyproject(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config() == ({}, None)
    (tmp_path / "pyproject.toml").write_text('[tool.bnnc]\nepochs = 2\nmin_compression = 20\n')
    assert load_config()[0] == {"epochs": 2, "min_compression": 20}
    (tmp_path / "bnnc.toml").write_text('epochs = 4\n')  # bnnc.toml first
    assert load_config()[0] == {"epochs": 4}
    assert merge({"epochs": 4, "data": "x"}, epochs=7, data=None) == {"epochs": 7, "data": "x"}  # CLI wins


@pytest.mark.parametrize("table, message", [
    ({"epoch": 3}, "unknown key 'epoch'"),
    ({"epochs": "3"}, "epochs must be int, got str"),
    ({"min_speedup": True}, "min_speedup must be int or float"),
    ({"uint8_input": 1}, "uint8_input must be bool"),
])
def test_config_errors_name_the_key(table, message):
    with pytest.raises(ConfigError, match=message):
        check(table, "bnnc.toml")
