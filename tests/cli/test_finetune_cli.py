import json

import numpy as np
import torch
from typer.testing import CliRunner

from bnnc.cli import app
from bnnc.conversion import convert_file

runner = CliRunner()
PRE = {"input_shape": [1, 28, 28], "mean": [0.3], "std": [0.35], "class_names": [str(i) for i in range(10)],
       "pixel_scale": 1 / 255}


def _data(tmp_path):
    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 10, 512), rng.integers(0, 10, 128)
    # a learnable signal: the class sets the brightness of a row of pixels
    x_train = rng.integers(0, 60, (512, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 60, (128, 28, 28), dtype=np.uint8)
    x_train[np.arange(512), y_train * 2] = 255
    x_test[np.arange(128), y_test * 2] = 255
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def test_finetune_command_end_to_end(tmp_path, fp32_checkpoint):
    model = convert_file(fp32_checkpoint("mlp", preprocessing=PRE), tmp_path / "m.bnnc").output
    data = _data(tmp_path)
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


def test_finetune_bad_input(tmp_path, fp32_checkpoint):
    fp32 = fp32_checkpoint("mlp", preprocessing=PRE)
    model = convert_file(fp32, tmp_path / "m.bnnc").output
    data = _data(tmp_path)
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
