import json

import torch
from conftest import PRE, learnable_npz
from typer.testing import CliRunner

from bnnc.cli import app
from bnnc.conversion import convert_file

runner = CliRunner()



def _model(tmp_path, fp32_checkpoint):
    data = learnable_npz(tmp_path, 256, 64)
    return convert_file(fp32_checkpoint("mlp", preprocessing=PRE), tmp_path / "m.bnnc", data=data).output, data


def test_report_gate_exit_3_names_the_failing_check(tmp_path, fp32_checkpoint):
    model, data = _model(tmp_path, fp32_checkpoint)
    js, md = tmp_path / "r.json", tmp_path / "r.md"
    r = runner.invoke(app, ["report", str(model), "--data", str(data), "--batch", "4", "--samples", "32",
                            "--json-out", str(js), "--markdown", str(md), "--min-compression", "1e9",
                            "--max-accuracy-drop", "100"], env={"COLUMNS": "200"})
    assert r.exit_code == 3, r.output
    assert "check failed: compression_vs_fp32" in r.stderr and "accuracy_drop_pt" not in r.stderr
    d = json.loads(js.read_text())
    assert d["passed"] is False and [c["name"] for c in d["checks"] if not c["passed"]] == ["compression_vs_fp32"]
    assert "❌ FAIL" in md.read_text()


def test_config_file_then_command_line(tmp_path, fp32_checkpoint, monkeypatch):
    model, data = _model(tmp_path, fp32_checkpoint)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bnnc.toml").write_text(f'data = "{data}"\nmin_compression = 1e9\nsamples = 32\nbatch = 4\n')
    r = runner.invoke(app, ["report", str(model)])
    assert r.exit_code == 3 and "compression_vs_fp32" in r.stderr  # from the file
    r = runner.invoke(app, ["report", str(model), "--min-compression", "1.5"])
    assert r.exit_code == 0, r.output  # the command line wins
    (tmp_path / "bnnc.toml").write_text('min_compresion = 2\n')
    r = runner.invoke(app, ["report", str(model)])
    assert r.exit_code == 2 and "unknown key 'min_compresion'" in r.stderr and "Traceback" not in r.output


def test_each_step_of_a_pipeline_reads_the_config_file(tmp_path, fp32_checkpoint, monkeypatch):
    """A CI job's ``bnnc convert``, ``bnnc finetune``, ``bnnc export`` with their data (and epochs, batch size) in
    bnnc.toml, as ``report`` and ``compress`` read it; the command line wins."""
    data = learnable_npz(tmp_path, 256, 64)
    src = fp32_checkpoint("mlp", preprocessing=PRE)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bnnc.toml").write_text(f'data = "{data}"\nepochs = 1\nbatch_size = 32\n')
    r = runner.invoke(app, ["convert", str(src), "-o", "m.bnnc", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["calibration"] is not None  # thresholds calibrated on the file's data
    r = runner.invoke(app, ["finetune", "m.bnnc"])
    assert r.exit_code == 0, r.output
    config = torch.load(tmp_path / "m.finetuned.bnnc", weights_only=True)["binarized"]["finetune"]["config"]
    assert (config["epochs"], config["batch_size"]) == (1, 32)
    r = runner.invoke(app, ["finetune", "m.bnnc", "--epochs", "2", "--force"])
    assert r.exit_code == 0, r.output
    assert torch.load(tmp_path / "m.finetuned.bnnc", weights_only=True)["binarized"]["finetune"]["config"][
        "epochs"] == 2
    r = runner.invoke(app, ["export", "m.finetuned.bnnc", "--json"])
    assert r.exit_code == 0, r.output
    assert data.name in json.loads(r.stdout)["parity"][0]["inputs"]  # checked on the file's data, not random inputs


def test_the_briefs_pipeline_names_the_model_once(tmp_path, fp32_checkpoint, monkeypatch):
    """``bnnc convert model.pt``, ``bnnc finetune --epochs N``, ``bnnc export``, ``bnnc report``: each step after
    convert takes the checkpoint the step before wrote in the working directory, and says which; with two to choose
    from, or none, it names no guess."""
    data = learnable_npz(tmp_path, 256, 64)
    job = tmp_path / "job"
    job.mkdir()
    fp32_checkpoint("mlp", preprocessing=PRE).rename(job / "model.pt")
    monkeypatch.chdir(job)
    (job / "bnnc.toml").write_text(f'data = "{data}"\nbatch_size = 32\n')
    r = runner.invoke(app, ["finetune", "--epochs", "1"])
    assert r.exit_code == 2 and "no converted bnnc checkpoint in" in r.stderr and "bnnc finetune MODEL.bnnc" in r.stderr
    assert runner.invoke(app, ["convert", "model.pt"]).exit_code == 0
    r = runner.invoke(app, ["finetune", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert "finetune: model.bnnc (the converted checkpoint here" in r.stderr
    r = runner.invoke(app, ["export", "--json"])
    assert r.exit_code == 0, r.output
    assert "export: model.finetuned.bnnc (the fine-tuned checkpoint here" in r.stderr
    assert (job / "model.finetuned.onnx").is_file()
    r = runner.invoke(app, ["report", "--samples", "64", "--batch", "4", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["model"]["path"].endswith("model.finetuned.bnnc")
    (job / "other.bnnc").write_bytes((job / "model.bnnc").read_bytes())
    r = runner.invoke(app, ["finetune", "--epochs", "1", "--force"])
    assert r.exit_code == 2 and "2 converted bnnc checkpoints" in r.stderr and "model.bnnc, other.bnnc" in r.stderr
    (tmp_path / "ci" / "models").mkdir(parents=True)  # `bnnc convert models/net.pt` wrote beside its input
    (job / "model.bnnc").rename(tmp_path / "ci" / "models" / "net.bnnc")
    monkeypatch.chdir(tmp_path / "ci")
    r = runner.invoke(app, ["finetune", "--epochs", "1"])
    assert r.exit_code == 2 and "no converted bnnc checkpoint in" in r.stderr
    assert "pass the one meant: bnnc finetune models/net.bnnc" in " ".join(r.stderr.split())


def test_the_briefs_pipeline_names_the_data_once(tmp_path, fp32_checkpoint, monkeypatch):
    """No bnnc.toml: ``bnnc convert model.pt --data D`` records D, and ``finetune``, ``export`` and ``report`` with
    neither MODEL nor ``--data`` take it, saying so; recorded data that has gone is one error line, and a data
    function (code) is never recorded."""
    data = learnable_npz(tmp_path, 256, 64)
    job = tmp_path / "job"
    job.mkdir()
    fp32_checkpoint("mlp", preprocessing=PRE).rename(job / "model.pt")
    monkeypatch.chdir(job)
    assert runner.invoke(app, ["convert", "model.pt", "--data", str(data)]).exit_code == 0
    r = runner.invoke(app, ["finetune", "--epochs", "1", "--batch-size", "32"])
    assert r.exit_code == 0, r.output
    assert f"finetune: data {data} (recorded in model.bnnc" in r.stderr
    r = runner.invoke(app, ["export", "--json"])
    assert r.exit_code == 0, r.output
    assert f"samples of {data}" in json.loads(r.stdout)["parity"][0]["inputs"]  # the check ran on the data, not noise
    r = runner.invoke(app, ["report", "--samples", "64", "--batch", "4", "--json"])
    assert r.exit_code == 0, r.output
    assert f"report: data {data} (recorded in model.finetuned.bnnc" in r.stderr
    data.rename(tmp_path / "moved.npz")
    r = runner.invoke(app, ["report", "--samples", "64", "--batch", "4"])
    said = " ".join(r.stderr.split())
    assert r.exit_code == 2 and f"{data}, which model.finetuned.bnnc records, is not there" in said
    assert "Traceback" not in r.output

    (tmp_path / "loader.py").write_text("import numpy as np\n\ndef load():\n"
                                        f"    d = np.load({str(tmp_path / 'moved.npz')!r})\n"
                                        "    return (d['x_train'], d['y_train']), (d['x_test'], d['y_test'])\n")
    r = runner.invoke(app, ["convert", "model.pt", "-o", "again.bnnc", "--data", f"{tmp_path / 'loader.py'}:load"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["finetune", "again.bnnc", "--epochs", "1"])
    assert r.exit_code == 2 and "no training data" in r.stderr and "bnnc convert --data" in r.stderr

    # A file that says its data is code (written by hand, not by bnnc) gets it read as a path, never run.
    marker = tmp_path / "ran"
    (job / "evil.py").write_text(f"def load():\n    open({str(marker)!r}, 'w').close()\n")
    checkpoint = torch.load(job / "again.bnnc", weights_only=True)
    checkpoint["binarized"]["calibration"]["data_path"] = "evil.py:load"
    torch.save(checkpoint, job / "forged.bnnc")
    r = runner.invoke(app, ["finetune", "forged.bnnc", "--epochs", "1"])
    assert r.exit_code == 2 and "evil.py:load, which forged.bnnc records, is not there" in r.stderr
    assert not marker.exists()


def test_report_refuses_a_foreign_onnx(tmp_path, fp32_checkpoint):
    model, data = _model(tmp_path, fp32_checkpoint)
    fake = tmp_path / "x.onnx"
    fake.write_bytes(b"not onnx")
    r = runner.invoke(app, ["report", str(model), "--data", str(data), "--onnx", str(fake)])
    assert r.exit_code == 2 and "not a readable ONNX model" in r.stderr


def test_compress_one_command(tmp_path, fp32_checkpoint):
    data = learnable_npz(tmp_path, 256, 64)
    src = fp32_checkpoint("mlp", preprocessing=PRE)
    out = tmp_path / "job"
    r = runner.invoke(app, ["compress", str(src), "--data", str(data), "--epochs", "1", "-o", str(out),
                            "--min-compression", "2"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert (out / "mlp.onnx").is_file() and json.loads((out / "report.json").read_text())["passed"]
    assert "check pass: compression_vs_fp32" in r.stdout
