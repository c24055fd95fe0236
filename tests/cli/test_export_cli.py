import json

import onnx
from typer.testing import CliRunner

from bnnc.cli import app

runner = CliRunner()


def _converted(tmp_path, fp32_checkpoint, kind="mlp"):
    src = fp32_checkpoint(kind)
    out = tmp_path / f"{kind}.bnnc"
    r = runner.invoke(app, ["convert", str(src), "-o", str(out), "--min-params", "0"])
    assert r.exit_code == 0, r.output
    return out


def test_export_writes_a_checked_onnx_model_with_metadata(tmp_path, fp32_checkpoint):
    model = _converted(tmp_path, fp32_checkpoint, "cnn")
    r = runner.invoke(app, ["export", str(model), "--check-samples", "64"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    out = model.with_suffix(".onnx")
    assert "match" in r.stdout and "ONNX file" in r.stdout and f"wrote {out}" in r.stderr
    proto = onnx.load(out)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["bnnc.version"] and meta["bnnc.mode"] == "integer"
    assert [x["name"] for x in json.loads(meta["bnnc.plan"])["layers"]][0] == "features.0"
    onnx.checker.check_model(proto)


def test_export_json_and_float_mode(tmp_path, fp32_checkpoint):
    model = _converted(tmp_path, fp32_checkpoint)
    out = tmp_path / "f.onnx"
    r = runner.invoke(app, ["export", str(model), "-o", str(out), "--float", "--json", "--check-samples", "32"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["mode"] == "float" and d["path"] == str(out) and d["onnx_bytes"] == out.stat().st_size
    assert d["parity"][0]["ok"] and d["parity"][0]["argmax_agreement"] == 1.0
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert "MatMulInteger" not in ops and "QLinearConv" not in ops


def test_export_refuses_fp32_models_and_existing_outputs(tmp_path, fp32_checkpoint):
    src = fp32_checkpoint("mlp", name="fp32.pt")
    r = runner.invoke(app, ["export", str(src)])
    assert r.exit_code == 2 and "not a binarized one" in r.stderr and "bnnc convert" in r.stderr
    assert "Traceback" not in r.output and not src.with_suffix(".onnx").exists()
    model = _converted(tmp_path, fp32_checkpoint)
    existing = tmp_path / "taken.onnx"
    existing.write_bytes(b"keep me")
    r = runner.invoke(app, ["export", str(model), "-o", str(existing)])
    assert r.exit_code == 2 and "already exists" in r.stderr
    assert existing.read_bytes() == b"keep me"
    r = runner.invoke(app, ["export", str(model), "-o", str(existing), "--force", "--no-check"])
    assert r.exit_code == 0, r.output
    assert existing.read_bytes()[:4] != b"keep" and "skipped" in r.stdout
