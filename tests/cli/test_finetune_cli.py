import json

import torch
from conftest import PRE, learnable_npz
from typer.testing import CliRunner

from bnnc.cli import app
from bnnc.conversion import convert_file

runner = CliRunner()


def test_finetune_command_end_to_end(tmp_path, fp32_checkpoint):
    model = convert_file(fp32_checkpoint("mlp", preprocessing=PRE), tmp_path / "m.bnnc").output
    data = learnable_npz(tmp_path, 512, 128)
    r = runner.invoke(app, ["finetune", str(model), "--data", str(data), "--epochs", "2", "--batch-size", "64"])
    assert r.exit_code == 0, r.output
    assert "fine-tuned (best: epoch" in r.stdout and "epoch 2:" in r.stderr
    out = tmp_path / "m.finetuned.bnnc"
    assert out.is_file() and (tmp_path / "m.finetuned.history.json").is_file()
    assert torch.load(out, weights_only=True)["binarized"]["finetune"]["config"]["epochs"] == 2

    r = runner.invoke(app, ["finetune", str(model), "--data", str(data), "--epochs", "3", "--batch-size", "64",
                            "--resume", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert [e["epoch"] for e in result["epochs"]] == [1, 2, 3]


def test_the_recipe_switches_reach_the_config_from_the_command_line(tmp_path, fp32_checkpoint):
    model = convert_file(fp32_checkpoint("mlp", preprocessing=PRE), tmp_path / "m.bnnc").output
    data = learnable_npz(tmp_path, 256, 64)
    r = runner.invoke(app, ["finetune", str(model), "--data", str(data), "--epochs", "2", "--batch-size", "64",
                            "--ste", "approxsign", "--two-step", "--bn-reestimate", "--warmup", "0.1",
                            "--latent-lr", "0.02"])
    assert r.exit_code == 0, r.output
    config = torch.load(tmp_path / "m.finetuned.bnnc", weights_only=True)["binarized"]["finetune"]["config"]
    switches = ("ste", "two_step", "bn_reestimate", "warmup", "latent_lr")
    assert tuple(config[k] for k in switches) == ("approxsign", True, True, 0.1, 0.02)
    r = runner.invoke(app, ["finetune", str(model), "--data", str(data), "--ste", "box", "--force"])
    assert r.exit_code == 2 and "--ste" in r.stderr
    r = runner.invoke(app, ["finetune", str(model), "--data", str(data), "--epochs", "1", "--batch-size", "64",
                            "--ste", "ede", "--force"])
    assert r.exit_code == 0, r.output
    config = torch.load(tmp_path / "m.finetuned.bnnc", weights_only=True)["binarized"]["finetune"]["config"]
    assert config["ste"] == "ede"
    r = runner.invoke(app, ["finetune", str(model), "--data", str(data), "--epochs", "1", "--batch-size", "64",
                            "--bop", "--bop-gamma", "0.002", "--bop-threshold", "0.2", "--force"])
    assert r.exit_code == 0, r.output
    config = torch.load(tmp_path / "m.finetuned.bnnc", weights_only=True)["binarized"]["finetune"]["config"]
    assert (config["bop"], config["bop_gamma"], config["bop_threshold"]) == (True, 0.002, 0.2)
    for bad in (["--bop", "--two-step"], ["--bop", "--glorot-lr"], ["--bop-threshold", "1"], ["--bop-gamma", "0"]):
        r = runner.invoke(app, ["finetune", str(model), "--data", str(data), *bad, "--force"])
        assert r.exit_code == 2 and "Traceback" not in r.output, (bad, r.output)


def test_finetune_bad_input(tmp_path, fp32_checkpoint):
    fp32 = fp32_checkpoint("mlp", preprocessing=PRE)
    model = convert_file(fp32, tmp_path / "m.bnnc").output
    data = learnable_npz(tmp_path, 512, 128)
    cases = [
        (["finetune", str(fp32), "--data", str(data)], "convert"),
        (["finetune", str(model), "--data", str(tmp_path / "none.npz")], "none.npz"),
        (["finetune", str(model), "--data", str(data), "--device", "cuda:99"] if not torch.cuda.is_available()
         else ["finetune", str(model), "--data", str(data), "--device", "tpu"], "device"),
    ]
    for args, message in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output and message in r.stderr, (args, r.stderr)
    r = runner.invoke(app, ["finetune", str(model), "--data", str(data), "--epochs", "0"])
    assert r.exit_code == 2


def test_nproc_relaunches_the_command_as_parsed_without_nproc(monkeypatch):
    """``--nproc N`` runs the same command under torchrun: rebuilt from the parsed options (whatever their
    spelling or order on the command line), the global ones first, ``--nproc`` itself left out."""
    import bnnc.cli.finetune as cli_finetune
    import bnnc.training

    launched = {}

    def torchrun(ctx, nproc):
        launched["nproc"], launched["args"] = nproc, cli_finetune.command_line(ctx, drop={"nproc"})
        return 0

    monkeypatch.setattr(cli_finetune, "_torchrun", torchrun)
    monkeypatch.setattr(bnnc.training, "prepare", lambda *args, **kwargs: None)
    r = runner.invoke(app, ["--debug", "finetune", "m.bnnc", "--nproc=2", "--data", "d.npz", "--epochs", "7",
                            "--no-distill", "--bn", "shift", "-o", "out.bnnc", "--glorot-lr", "--lr", "0.01"])
    assert r.exit_code == 0, r.output
    assert launched["nproc"] == 2
    assert launched["args"] == ["--debug", "finetune", "m.bnnc", "--data", "d.npz", "--epochs", "7",
                                "--output", "out.bnnc", "--lr", "0.01", "--no-distill", "--glorot-lr", "--bn", "shift"]
