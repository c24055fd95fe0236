"""The most common user artefact: ``torch.save(model.state_dict())`` plus ``--arch pkg.module:factory``,
with data that records no preprocessing — through every command, from the CLI, with default options."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import archs
import numpy as np
import pytest
import torch
from conftest import learnable_npz
from typer.testing import CliRunner

from bnnc.cli import app
from bnnc.loading import load_checkpoint

runner = CliRunner()

USER_MODULE = '''
import torch
from torch import nn


def build(num_classes=10, hidden=64):
    """An MLP that takes images: Flatten first, BatchNorm, ReLU."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


class Flat(nn.Module):
    """An MLP without a Flatten: it takes vectors of 784 values only."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(784, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 64),
                                  nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x):
        return self.body(x)


def required(in_features, n_classes):
    """build's MLP, its sizes required arguments."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, 64), nn.BatchNorm1d(64), nn.ReLU(),
                         nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, n_classes))


def tabular(features=5, classes=3):
    """A model for a table of numbers."""
    return nn.Sequential(nn.Linear(features, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 64),
                         nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, classes))
'''


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder: their model module, a trained state dict of it, and image data (.npz, no preprocessing)."""
    d = tmp_path_factory.mktemp("user")
    (d / "usermodels.py").write_text(USER_MODULE)
    data = learnable_npz(d, 512, 128)
    torch.manual_seed(0)
    ns: dict = {}
    exec(USER_MODULE, ns)  # the same definitions the CLI imports by name
    for name, model in (("mlp_sd.pt", ns["build"]()), ("flat_sd.pt", ns["Flat"]())):
        with np.load(data) as z:
            x = torch.from_numpy(z["x_train"]).float().div(255).reshape(-1, 784)
            y = torch.from_numpy(z["y_train"]).long()
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        for _ in range(30):  # a few hundred steps: well above chance, as a real user's model would be
            for i in range(0, len(x), 64):
                loss = torch.nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
                opt.zero_grad()
                loss.backward()
                opt.step()
        torch.save(model.eval().state_dict(), d / name)
    return d


def run(folder: Path, *args: str, code: int = 0) -> str:
    """stdout of a successful command; or, for ``code`` 2, its one error line."""
    r = runner.invoke(app, [a.replace("{d}", str(folder)) for a in args], env={"COLUMNS": "200"})
    assert r.exit_code == code, r.output
    if code == 0:
        return r.stdout
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.output, r.stderr
    return lines[0]


def test_compress_a_state_dict_with_distillation(user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(user)
    run(user, "compress", "{d}/mlp_sd.pt", "--arch", "usermodels:build", "--data", "{d}/d.npz",
        "--epochs", "1", "-o", str(tmp_path / "out"))
    history = json.loads((tmp_path / "out" / "mlp_sd.finetuned.history.json").read_text())
    assert history["config"]["distill"] is True
    assert history["config"]["batch_size"] == 64  # the measured default reaches the CLI's runs
    assert history["fp32_accuracy"] > 0.5  # measured on the teacher: the state dict rebuilt with the recorded arch
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["accuracy"]["onnx_torch_agreement"] == 1.0
    assert report["model"]["source_sha256"] == load_checkpoint(tmp_path / "out" / "mlp_sd.bnnc").binarized.source.sha256


def test_each_step_on_a_state_dict_of_an_mlp_on_images(user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(user)
    m, ft, onnx = tmp_path / "m.bnnc", tmp_path / "m.finetuned.bnnc", tmp_path / "m.onnx"
    run(user, "convert", "{d}/mlp_sd.pt", "--arch", "usermodels:build", "--data", "{d}/d.npz", "-o", str(m))
    assert load_checkpoint(m).preprocessing["input_shape"] == [1, 28, 28]  # the shape the data met the model in
    out = run(user, "finetune", str(m), "--data", "{d}/d.npz", "--epochs", "1", "--json")
    assert json.loads(out)["fp32_accuracy"] > 0.5  # distilled from the rebuilt teacher
    exported = json.loads(run(user, "export", str(ft), "--data", "{d}/d.npz", "--json", "-o", str(onnx)))
    assert exported["parity"][0]["argmax_agreement"] == 1.0 and exported["parity"][0]["samples"] == 128
    run(user, "report", str(ft), "--data", "{d}/d.npz", "--onnx", str(onnx), "--json-out", str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text())["accuracy"]["onnx_torch_agreement"] == 1.0


def test_an_architecture_and_a_data_loader_named_by_file_path(user: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch):
    """``--arch src/nets.py:build`` and ``--data loaders.py:load`` as typed in a project's folder: the file's own
    import of a sibling works, the checkpoint records its absolute path so later steps run from any folder, and
    ``--data loaders:load`` finds the module in the working directory, as ``--arch`` does."""
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "blocks.py").write_text(USER_MODULE)
    (project / "src" / "nets.py").write_text("from blocks import build as _build\n\n\n"
                                             "def build(num_classes=10):\n    return _build(num_classes)\n")
    (project / "loaders.py").write_text(
        "import numpy as np\nimport torch\nfrom torch.utils.data import TensorDataset\n\n\ndef load():\n"
        f"    z = np.load({str(user / 'd.npz')!r})\n"
        "    return tuple(TensorDataset(torch.from_numpy(z[f'x_{s}']), torch.from_numpy(z[f'y_{s}']))\n"
        "                 for s in ('train', 'test'))\n")
    monkeypatch.chdir(project)
    m = project / "m.bnnc"
    run(user, "convert", "{d}/mlp_sd.pt", "--arch", "src/nets.py:build", "--data", "loaders:load", "-o", "m.bnnc")
    assert load_checkpoint(m).arch == f"{project.resolve() / 'src' / 'nets.py'}:build"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = json.loads(run(user, "finetune", str(m), "--data", str(project / "loaders.py") + ":load", "--epochs", "1",
                         "--json", "-o", "ft.bnnc"))
    assert out["fp32_accuracy"] > 0.5  # the teacher: rebuilt from the recorded file, from another folder
    exported = json.loads(run(user, "export", "ft.bnnc", "--data", "{d}/d.npz", "--json", "-o", "ft.onnx"))
    assert exported["parity"][0]["argmax_agreement"] == 1.0


def test_an_architecture_in_a_training_script_that_parses_options_at_import(user: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    """``--arch train.py:Net`` where train.py calls ``argparse`` at module level, or in the factory or data loader it
    names: they see the command line of a run with no arguments (their defaults), not bnnc's; a module that exits
    while imported is one error line."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(
        "import argparse\n\nimport numpy as np\n\nparser = argparse.ArgumentParser()\n"
        "parser.add_argument('--hidden', type=int, default=64)\nargs = parser.parse_args()\n" + USER_MODULE +
        "\n\ndef parsed():\n    return build(hidden=parser.parse_args().hidden)\n\n\n"
        f"def load():\n    parser.parse_args()\n    z = np.load({str(user / 'd.npz')!r})\n"
        "    return (z['x_train'], z['y_train']), (z['x_test'], z['y_test'])\n")
    run(user, "convert", "{d}/mlp_sd.pt", "--arch", "train.py:build", "-o", "m.bnnc")
    run(user, "convert", "{d}/mlp_sd.pt", "--arch", "train.py:parsed", "--data", "train.py:load", "-o", "p.bnnc")
    (tmp_path / "cuda_only.py").write_text("import sys\n\nsys.exit('no GPU found')\n")
    line = run(user, "convert", "{d}/mlp_sd.pt", "--arch", "cuda_only.py:build", "-o", "x.bnnc", code=2)
    assert "exited (SystemExit: no GPU found)" in line and "must import without error or exit" in line


def test_an_architecture_file_in_a_package_with_relative_imports(user: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    """``--arch models/nets.py:build`` where ``models/`` is a package and the file imports ``from .blocks``: it is
    imported as ``models.nets`` (its package found above it), from the project's folder and from any other."""
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "models" / "__init__.py").write_text("")
    (project / "models" / "blocks.py").write_text(USER_MODULE)
    (project / "models" / "nets.py").write_text("from .blocks import build as _build\n\n\n"
                                                "def build(num_classes=10):\n    return _build(num_classes)\n")
    monkeypatch.chdir(project)
    run(user, "convert", "{d}/mlp_sd.pt", "--arch", "models/nets.py:build", "--data", "{d}/d.npz", "-o", "m.bnnc")
    monkeypatch.chdir(tmp_path)
    out = json.loads(run(user, "finetune", "project/m.bnnc", "--data", "{d}/d.npz", "--epochs", "1", "--json"))
    assert out["fp32_accuracy"] > 0.5  # the teacher, rebuilt from the recorded file


def test_a_csv_table_with_named_classes(user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Tabular data as pandas writes it (its index column, a header, class names as labels) through convert,
    finetune and export: the converted checkpoint records the names, and later steps label the rows by them."""
    monkeypatch.chdir(user)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    names = ["ant", "bee", "cat"]
    rows = [f"{i},{','.join(f'{v:.4f}' for v in row)},{names[int(row[:3].argmax())]}" for i, row in enumerate(x)]
    (tmp_path / "t.csv").write_text(",f0,f1,f2,f3,f4,species\n" + "\n".join(rows) + "\n")
    ns: dict = {}
    exec(USER_MODULE, ns)
    torch.manual_seed(0)
    torch.save(ns["tabular"]().state_dict(), tmp_path / "tab_sd.pt")
    m, onnx = tmp_path / "m.bnnc", tmp_path / "m.onnx"
    run(user, "convert", str(tmp_path / "tab_sd.pt"), "--arch", "usermodels:tabular", "--data", str(tmp_path / "t.csv"),
        "-o", str(m))
    pre = load_checkpoint(m).preprocessing
    assert pre["class_names"] == names and pre["input_shape"] == [5] and pre["pixel_scale"] == 1.0
    out = json.loads(run(user, "finetune", str(m), "--data", str(tmp_path / "t.csv"), "--epochs", "2", "--json"))
    assert out["best_accuracy"] > 0.6  # the labels follow the features: the rows were read as written
    ft = tmp_path / "m.finetuned.bnnc"
    exported = json.loads(run(user, "export", str(ft), "--data", str(tmp_path / "t.csv"), "--json", "-o", str(onnx)))
    assert exported["parity"][0]["argmax_agreement"] == 1.0 and exported["parity"][0]["samples"] == 40


def test_a_one_logit_binary_classifier(user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A binary classifier with one output (trained with BCEWithLogitsLoss): class 1 where the logit is > 0, in the
    loss, the accuracy, the exports' parity and the C model's returned class; labels -1/+1 get a fix, a sigmoid
    output one line."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    np.savez("b.npz", x_train=x[:500], y_train=y[:500], x_test=x[500:], y_test=y[500:])
    torch.manual_seed(0)
    model = archs.tabular_net(5, classes=1)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(100):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(torch.from_numpy(x[:500]))[:, 0],
                                                                    torch.from_numpy(y[:500]).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(model.eval().state_dict(), "b_sd.pt")
    arch = ["--arch", "archs:tabular_net", "--arch-kwargs", '{"features": 5, "classes": 1}']
    run(user, "compress", "b_sd.pt", *arch, "--data", "b.npz", "--epochs", "2", "--format", "onnx,c", "-o", "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["accuracy"]["fp32"] > 0.9 and report["accuracy"]["bnnc_onnx"] > 0.8  # argmax of one column: 50%
    assert report["accuracy"]["onnx_torch_agreement"] == 1.0 and report["c"]["torch_agreement"] == 1.0
    np.savez("pm.npz", x_train=x[:500], y_train=2 * y[:500] - 1, x_test=x[500:], y_test=2 * y[500:] - 1)
    assert "save (y + 1) // 2" in run(user, "convert", "b_sd.pt", *arch, "--data", "pm.npz", "-o", "m.bnnc", code=2)


def test_signals_stored_with_their_channel_axis(user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Audio saved as ``(N, 1, 500)``, for a Conv1d net: the samples are ``(1, 500)`` as stored (not an image of
    1x500 given a channel axis), whatever the signal's length; the C export computes its shape-sized pooling."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 1, 500)).astype(np.float32)
    y = (x[:, 0, :250].mean(1) > x[:, 0, 250:].mean(1)).astype(np.int64)
    np.savez(tmp_path / "audio.npz", x_train=x[:128], y_train=y[:128], x_test=x[128:], y_test=y[128:])
    torch.manual_seed(0)
    torch.save(archs.Waveform(classes=2).state_dict(), tmp_path / "wave_sd.pt")
    run(user, "compress", "wave_sd.pt", "--arch", "archs:Waveform", "--arch-kwargs", '{"classes": 2}', "--data",
        "audio.npz", "--epochs", "1", "--format", "onnx,c", "-o", "out")
    assert load_checkpoint(tmp_path / "out" / "wave_sd.bnnc").preprocessing["input_shape"] == [1, 500]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["accuracy"]["onnx_torch_agreement"] == 1.0


def test_a_model_without_flatten_takes_images_flattened(user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(user)
    m = tmp_path / "f.bnnc"
    run(user, "convert", "{d}/flat_sd.pt", "--arch", "usermodels:Flat", "--data", "{d}/d.npz", "-o", str(m))
    assert load_checkpoint(m).preprocessing["input_shape"] == [784]
    exported = json.loads(run(user, "export", str(m), "--data", "{d}/d.npz", "--json"))
    assert exported["parity"][0]["argmax_agreement"] == 1.0


def test_a_converted_checkpoint_without_preprocessing_meets_image_data(user: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch):
    """Converted without --data (the plan probed (784,)), then fine-tuned, exported and reported on images."""
    monkeypatch.chdir(user)
    m = tmp_path / "n.bnnc"
    run(user, "convert", "{d}/mlp_sd.pt", "--arch", "usermodels:build", "-o", str(m))
    run(user, "finetune", str(m), "--data", "{d}/d.npz", "--epochs", "1")
    ft = tmp_path / "n.finetuned.bnnc"
    assert load_checkpoint(ft).preprocessing["input_shape"] in ([784], [1, 28, 28])  # recorded once fine-tuned
    exported = json.loads(run(user, "export", str(m), "--data", "{d}/d.npz", "--json", "-o", str(tmp_path / "n.onnx")))
    assert exported["parity"][0]["argmax_agreement"] == 1.0 and not exported["notes"]
    run(user, "report", str(ft), "--data", "{d}/d.npz", "--samples", "64")
    # pixels in: the statistics the data gives stand in for a normalisation the checkpoint doesn't record — said
    for fmt, suffix in (("onnx", ".onnx"), ("openvino", ".xml")):
        exported = json.loads(run(user, "export", str(m), "--data", "{d}/d.npz", "--uint8-input", "--json",
                                  "--format", fmt, "-o", str(tmp_path / f"u8{suffix}")))
        assert any("records no input normalisation" in n and "--mean" in n for n in exported["notes"]), exported
    exported = json.loads(run(user, "export", str(ft), "--data", "{d}/d.npz", "--uint8-input", "--json", "-o",
                              str(tmp_path / "ft_u8.onnx")))
    assert not any("normalisation" in n for n in exported["notes"])  # recorded at fine-tuning: nothing guessed


def test_teacher_given_as_a_state_dict(user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(user)
    m = tmp_path / "t.bnnc"
    run(user, "convert", "{d}/mlp_sd.pt", "--arch", "usermodels:build", "-o", str(m))
    moved = tmp_path / "teacher_sd.pt"
    shutil.copy(user / "mlp_sd.pt", moved)
    for extra in ([], ["--arch", "usermodels:build", "--arch-kwargs", '{"hidden": 64}']):
        out = run(user, "finetune", str(m), "--data", "{d}/d.npz", "--epochs", "1", "--teacher", str(moved), "--json",
                  "--force", *extra)
        assert json.loads(out)["fp32_accuracy"] > 0.5


def test_a_moved_or_changed_source_is_one_clear_error(user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(user / "usermodels.py", tmp_path)
    src = tmp_path / "src_sd.pt"
    shutil.copy(user / "mlp_sd.pt", src)
    m = tmp_path / "s.bnnc"
    run(tmp_path, "convert", str(src), "--arch", "usermodels:build", "-o", str(m))
    src.rename(tmp_path / "elsewhere.pt")
    data = ["--data", str(user / "d.npz")]
    for command in (["finetune", str(m), *data], ["report", str(m), *data]):
        err = run(tmp_path, *command, code=2)
        assert "src_sd.pt, which is not there" in err
    torch.save({k: v + 1 for k, v in torch.load(tmp_path / "elsewhere.pt").items()}, src)  # same path, other weights
    err = run(tmp_path, "finetune", str(m), "--data", str(user / "d.npz"), code=2)
    assert "changed since" in err and "--teacher" in err
    err = run(tmp_path, "report", str(m), "--data", str(user / "d.npz"), code=2)
    assert "changed since" in err and "--fp32" in err
    out = run(tmp_path, "finetune", str(m), "--data", str(user / "d.npz"), "--epochs", "1", "--no-distill", "--json")
    assert json.loads(out)["best_accuracy"] > 0


def test_a_last_batch_of_one_sample_is_left_out(user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(user)
    with np.load(user / "d.npz") as z:
        np.savez(tmp_path / "odd.npz", x_train=z["x_train"][:129], y_train=z["y_train"][:129], x_test=z["x_test"],
                 y_test=z["y_test"])
    m = tmp_path / "o.bnnc"
    run(user, "convert", "{d}/mlp_sd.pt", "--arch", "usermodels:build", "--data", str(tmp_path / "odd.npz"),
        "-o", str(m))
    out = run(user, "finetune", str(m), "--data", str(tmp_path / "odd.npz"), "--epochs", "2", "--batch-size", "128",
              "--json")
    assert [e["dropped_samples"] for e in json.loads(out)["epochs"]] == [1, 1]
    history = json.loads((tmp_path / "o.finetuned.history.json").read_text())
    assert history["epochs"][0]["dropped_samples"] == 1


def test_labels_the_model_cannot_output(user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(user)
    with np.load(user / "d.npz") as z:
        y = z["y_train"].copy()
        y[5] = 18
        np.savez(tmp_path / "bad.npz", x_train=z["x_train"], y_train=y, x_test=z["x_test"], y_test=z["y_test"])
    m = tmp_path / "l.bnnc"
    run(user, "convert", "{d}/mlp_sd.pt", "--arch", "usermodels:build", "-o", str(m))
    for args in (["convert", "{d}/mlp_sd.pt", "--arch", "usermodels:build", "-o", str(tmp_path / "x.bnnc")],
                 ["finetune", str(m)], ["export", str(m), "-o", str(tmp_path / "x.onnx")], ["report", str(m)],
                 ["compress", "{d}/mlp_sd.pt", "--arch", "usermodels:build", "-o", str(tmp_path / "c")]):
        err = run(user, *args, "--data", str(tmp_path / "bad.npz"), code=2)
        assert "labels from 0 to 18, but the model has 10 outputs" in err
    assert not (tmp_path / "c").exists() and not (tmp_path / "x.bnnc").exists()
    with np.load(user / "d.npz") as z:  # labels 1..10, as MATLAB and UCI number them
        np.savez(tmp_path / "from1.npz", x=z["x_train"], y=z["y_train"] % 10 + 1)
    err = run(user, "convert", "{d}/mlp_sd.pt", "--arch", "usermodels:build", "--data", str(tmp_path / "from1.npz"),
              "-o", str(tmp_path / "x.bnnc"), code=2)
    assert "labels from 1 to 10, but the model has 10 outputs" in err and "numbered from 1" in err and "y - 1" in err


def test_a_factory_a_file_names_runs_only_if_this_user_allowed_it(user: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    """A function recorded as ``arch`` is called only with this user's seal, ``--arch`` or BNNC_ALLOW_ARCH:
    a file from elsewhere could name any function."""
    monkeypatch.chdir(user)
    m = tmp_path / "m.bnnc"
    run(user, "convert", "{d}/mlp_sd.pt", "--arch", "usermodels:build", "-o", str(m))
    run(user, "export", str(m), "-o", str(tmp_path / "sealed.onnx"))  # sealed by this user: no --arch again
    raw = torch.load(m, weights_only=True)
    raw["arch_seal"] = None  # as a file made by someone else carries no seal of this user's
    foreign = tmp_path / "foreign.bnnc"
    torch.save(raw, foreign)
    line = run(user, "export", str(foreign), "-o", str(tmp_path / "f.onnx"), code=2)
    assert "names the function 'usermodels:build'" in line and "BNNC_ALLOW_ARCH=usermodels:build" in line
    assert not (tmp_path / "f.onnx").exists()
    monkeypatch.setenv("BNNC_CONFIG_DIR", str(tmp_path / "another-user"))  # another user's key: the seal fails
    assert "names the function" in run(user, "export", str(m), "-o", str(tmp_path / "g.onnx"), code=2)
    monkeypatch.setenv("BNNC_ALLOW_ARCH", "usermodels:build")
    run(user, "export", str(foreign), "-o", str(tmp_path / "f.onnx"))
    monkeypatch.delenv("BNNC_ALLOW_ARCH")
    run(user, "report", str(foreign), "--arch", "usermodels:build", "--data", "{d}/d.npz", "--samples", "64",
        "--json-out", str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text())["accuracy"]["onnx_torch_agreement"] == 1.0


def test_int8_first_and_last_layers_through_every_step(user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """--first int8 --last int8 on a state dict: planned, calibrated at convert, fine-tuned fake-quantized, exported
    with the PyTorch model's exact outputs in ONNX Runtime and OpenVINO, reported at 8 bits a weight."""
    monkeypatch.chdir(user)
    out = tmp_path / "out"
    run(user, "compress", "{d}/mlp_sd.pt", "--arch", "usermodels:build", "--data", "{d}/d.npz", "--epochs", "1",
        "--first", "int8", "--last", "int8", "--format", "onnx,openvino", "-o", str(out), "--samples", "64")
    ft = load_checkpoint(out / "mlp_sd.finetuned.bnnc")
    precisions = {la["name"]: la["precision"] for la in ft.binarized.plan.to_dict()["layers"]}
    assert precisions == {"1": "int8", "4": "binary", "7": "int8"}
    assert float(ft.model.get_submodule("1").input_scale) > 0 and float(ft.model.get_submodule("7").input_scale) > 0
    report = json.loads((out / "report.json").read_text())
    assert report["accuracy"]["onnx_torch_agreement"] == 1.0
    assert report["openvino"]["accuracy"]["torch_agreement"] == 1.0
    assert [la["bits"] for la in report["layers"]] == [8, 1, 8]
    line = run(user, "convert", "{d}/mlp_sd.pt", "--arch", "usermodels:build", "--int8", "nothing*", "-o",
               str(tmp_path / "x.bnnc"), code=2)
    assert "--int8 'nothing*' matches no Linear/Conv layer" in line


def test_the_normalisation_a_state_dict_was_trained_with(user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The user's model learnt on pixels/255, no mean/std: ``--mean 0 --std 1`` feeds it just that (not the data's
    own statistics), is recorded, and every later step reads the data so; a conflicting or half-given pair is one
    line."""
    monkeypatch.chdir(user)
    ns: dict = {}
    exec(USER_MODULE, ns)
    model = ns["build"]()
    model.load_state_dict(torch.load(user / "mlp_sd.pt"))
    with np.load(user / "d.npz") as z:
        x_test, y_test = torch.from_numpy(z["x_test"]).float().div(255), torch.from_numpy(z["y_test"])
    with torch.no_grad():
        direct = (model.eval()(x_test).argmax(1) == y_test).float().mean().item()
    out = tmp_path / "out"
    run(user, "compress", "{d}/mlp_sd.pt", "--arch", "usermodels:build", "--data", "{d}/d.npz", "--epochs", "1",
        "--mean", "0", "--std", "1", "-o", str(out), "--samples", "64")
    for name in ("mlp_sd.bnnc", "mlp_sd.finetuned.bnnc"):
        pre = load_checkpoint(out / name).preprocessing
        assert (pre["mean"], pre["std"], pre["pixel_scale"]) == ([0.0], [1.0], 1 / 255)
    history = json.loads((out / "mlp_sd.finetuned.history.json").read_text())
    assert history["fp32_accuracy"] == pytest.approx(direct, abs=1e-9)  # the teacher, fed as it was trained

    m = tmp_path / "m.bnnc"
    run(user, "convert", "{d}/mlp_sd.pt", "--arch", "usermodels:build", "-o", str(m))  # no data: nothing recorded
    result = json.loads(run(user, "finetune", str(m), "--data", "{d}/d.npz", "--mean", "0", "--std", "1",
                            "--epochs", "1", "--json"))
    assert result["fp32_accuracy"] == pytest.approx(direct, abs=1e-9)
    ft = tmp_path / "m.finetuned.bnnc"
    assert load_checkpoint(ft).preprocessing["mean"] == [0.0]
    line = run(user, "finetune", str(ft), "--data", "{d}/d.npz", "--mean", "0.5", "--std", "1", "-o",
               str(tmp_path / "x.bnnc"), code=2)
    assert "records mean [0.0], std [1.0]" in line and "drop --mean/--std" in line
    warning = "records no input normalisation, so the data is normalised with its own mean"
    for stated, warned in (([], True), (["--mean", "0", "--std", "1"], False)):
        r = runner.invoke(app, ["convert", str(user / "mlp_sd.pt"), "--arch", "usermodels:build", "--data",
                                str(user / "d.npz"), "-o", str(tmp_path / "w.bnnc"), "--force", *stated],
                          env={"COLUMNS": "400"})
        assert r.exit_code == 0 and (warning in r.stderr) is warned, r.stderr
        r = runner.invoke(app, ["finetune", str(m), "--data", str(user / "d.npz"), "--epochs", "1", "-o",
                                str(tmp_path / "w.finetuned.bnnc"), "--force", *stated], env={"COLUMNS": "400"})
        assert r.exit_code == 0 and r.stderr.count(warning) == warned, r.stderr  # once, before the first epoch
        assert not warned or r.stderr.index(warning) < r.stderr.index("epoch 1:")
    line = run(user, "convert", "{d}/mlp_sd.pt", "--arch", "usermodels:build", "--data", "{d}/d.npz", "--mean", "0",
               "-o", str(tmp_path / "y.bnnc"), code=2)
    assert "--mean needs --std too" in line
    assert not (tmp_path / "x.bnnc").exists() and not (tmp_path / "y.bnnc").exists()


def test_a_state_dict_saved_from_a_wrapper(user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``module.`` (DataParallel/DDP), ``_orig_mod.`` (torch.compile) or a Lightning module's ``model.`` before
    every key: the model's weights are the ones under that prefix, in every step that loads the file (the teacher
    too, rebuilt with --arch even where the file names an ``arch`` of its own, as PyTorch's ImageNet example's
    checkpoints do); two candidates are one line."""
    monkeypatch.chdir(user)
    sd = torch.load(user / "mlp_sd.pt")
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "dp.pt")
    lightning = {f"model.{k}": v for k, v in sd.items()} | {"criterion.weight": torch.ones(10)}
    torch.save({"epoch": 3, "state_dict": lightning}, tmp_path / "pl.ckpt")
    torch.save({f"_orig_mod.{k}": v for k, v in sd.items()}, tmp_path / "compiled.pt")  # torch.compile's wrapper
    model = torch.nn.Linear(2, 2)  # PyTorch's ImageNet example: its own `arch` (not bnnc's kind) by the weights
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    torch.save({"epoch": 90, "arch": "resnet18", "state_dict": {f"module.{k}": v for k, v in sd.items()},
                "best_acc1": torch.tensor(70.1), "optimizer": optimizer.state_dict()}, tmp_path / "imagenet.pth.tar")
    for name in ("dp.pt", "pl.ckpt", "compiled.pt", "imagenet.pth.tar"):
        m = tmp_path / f"{name}.bnnc"
        run(user, "convert", str(tmp_path / name), "--arch", "usermodels:build", "--data", "{d}/d.npz", "-o", str(m))
        source = load_checkpoint(tmp_path / name, arch="usermodels:build").model.state_dict()
        assert source.keys() == sd.keys() and all(torch.equal(source[k], sd[k]) for k in sd)
    for name in ("dp.pt", "imagenet.pth.tar"):
        out = json.loads(run(user, "finetune", str(tmp_path / f"{name}.bnnc"), "--data", "{d}/d.npz", "--epochs", "1",
                             "--json"))
        assert out["fp32_accuracy"] > 0.5  # the teacher, rebuilt from the same file as convert built it
    torch.save({"state_dict": lightning | {f"ema.{k}": v for k, v in sd.items()}}, tmp_path / "two.ckpt")
    line = run(user, "convert", str(tmp_path / "two.ckpt"), "--arch", "usermodels:build", "-o",
               str(tmp_path / "two.bnnc"), code=2)
    assert "under each of 'ema.', 'model.'" in line


def test_a_model_that_returns_more_than_logits_is_one_line(user: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    """forward() returning (logits, features) or a dict: everything bnnc does reads (N, classes) logits, so it is
    one error naming the fix, with or without data — not an internal error after converting."""
    (tmp_path / "twoheads.py").write_text(USER_MODULE + '''

class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = build()

    def forward(self, x):
        return self.net(x), x.flatten(1)


class Named(Pair):
    def forward(self, x):
        return {"logits": self.net(x)}
''')
    monkeypatch.chdir(tmp_path)
    sd = {f"net.{k}": v for k, v in torch.load(user / "mlp_sd.pt").items()}
    torch.save(sd, tmp_path / "sd.pt")
    for arch, kind in (("twoheads:Pair", "tuple"), ("twoheads:Named", "dict")):
        for data in ([], ["--data", str(user / "d.npz")]):
            line = run(tmp_path, "convert", "sd.pt", "--arch", arch, "-o", "x.bnnc", *data, code=2)
            assert f"the model returns a {kind}, not a tensor of logits" in line and "return self.model(x)[0]" in line
    line = run(tmp_path, "compress", "sd.pt", "--arch", "twoheads:Pair", "--data", str(user / "d.npz"), "-o", "c",
               code=2)
    assert "returns a tuple" in line
    assert not (tmp_path / "x.bnnc").exists() and not (tmp_path / "c").exists()


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning")
@pytest.mark.parametrize("form", ["torch.nn.utils", "torch.nn.utils.parametrizations"])
def test_weight_norm_and_spectral_norm_layers(user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str):
    """``weight_norm``/``spectral_norm`` (audio models have them) compute each weight: in a hook (``torch.nn.utils``:
    ``copy.deepcopy`` refuses the computed tensor) or a parametrization (``ParametrizedLinear`` is no ``nn.Linear``
    to binarize). Loading folds them into the plain weights they compute, so every step works and the hidden
    layers are binarized, and the FP32 model bnnc measures is the user's; the API's ``convert`` copies such a model
    and leaves it as it was."""
    name = "normed" if form == "torch.nn.utils" else "parametrized"  # one module name a form: imports are cached
    (tmp_path / f"{name}.py").write_text(f'''
import torch
import torch.nn.functional as F
from torch import nn
from {form} import spectral_norm, weight_norm


class Normed(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = weight_norm(nn.Conv2d(1, 16, 3, padding=1))
        self.c2 = weight_norm(nn.Conv2d(16, 16, 3, padding=1))
        self.fc1 = spectral_norm(nn.Linear(16 * 7 * 7, 32))
        self.fc2 = weight_norm(nn.Linear(32, 10))

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.c1(x)), 2)
        x = F.max_pool2d(torch.relu(self.c2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))
''')
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    normed = importlib.import_module(name)

    import bnnc

    torch.manual_seed(0)
    model = normed.Normed().eval()
    torch.save(model.state_dict(), "sd.pt")
    computed = ("weight_g", "weight_u") if form == "torch.nn.utils" else ("original0", "_u")
    assert all(any(k.endswith(end) for k in model.state_dict()) for end in computed)
    x = torch.randn(4, 1, 28, 28)
    loaded = load_checkpoint("sd.pt", arch=f"{name}:Normed").model.eval()
    assert torch.allclose(loaded(x), model(x), atol=1e-6)  # the user's model, weights folded
    run(tmp_path, "compress", "sd.pt", "--arch", f"{name}:Normed", "--data", str(user / "d.npz"), "--epochs", "1",
        "-o", "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["accuracy"]["onnx_torch_agreement"] == 1.0
    assert [layer["precision"] for layer in report["layers"]] == ["fp32", "binary", "binary", "fp32"]
    model(x).sum().backward()  # the hooks' weights now carry gradients: a plain deepcopy refuses them
    keys = set(model.state_dict())
    converted = bnnc.convert(model)
    assert keys == set(model.state_dict()) and "fc2.weight" in converted.state_dict()  # the user's model untouched


def test_a_model_of_lazy_modules(user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``nn.LazyConv2d``/``LazyBatchNorm2d``/``LazyLinear`` infer their input size at the first call: built from
    ``--arch`` they have none yet, so loading takes the shapes from the file (every step, the binarized
    checkpoint's too) and they become the plain modules they stand for."""
    (tmp_path / "lazynet.py").write_text('''
from torch import nn


def build():
    return nn.Sequential(nn.LazyConv2d(16, 3, padding=1), nn.LazyBatchNorm2d(), nn.ReLU(), nn.MaxPool2d(2),
                         nn.LazyConv2d(16, 3, padding=1), nn.LazyBatchNorm2d(), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.LazyLinear(32), nn.ReLU(), nn.LazyLinear(10))
''')
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import lazynet

    torch.manual_seed(0)
    model = lazynet.build()
    x = torch.randn(4, 1, 28, 28)
    model(x)  # the user's first call sizes the layers
    torch.save(model.eval().state_dict(), "sd.pt")
    loaded = load_checkpoint("sd.pt", arch="lazynet:build").model.eval()
    assert type(loaded[0]) is torch.nn.Conv2d and loaded[0].in_channels == 1 and loaded[9].in_features == 784
    assert torch.equal(loaded(x), model(x))
    out = run(tmp_path, "compress", "sd.pt", "--arch", "lazynet:build", "--data", str(user / "d.npz"), "--epochs",
              "1", "-o", "out")
    assert "fine-tuned 1 epoch in" in out
    assert json.loads((tmp_path / "out" / "report.json").read_text())["accuracy"]["onnx_torch_agreement"] == 1.0


RGB_MODULE = '''
from torch import nn


class Rgb32(nn.Module):
    """A CIFAR-style net: 3 channels in, a fixed 32x32 input (its Linear after the flatten says so)."""

    def __init__(self, num_classes=2):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Linear(16 * 8 * 8, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))
'''


@pytest.mark.parametrize("layout", ["class folders", "listed in a table"])
def test_an_image_folder_is_read_at_the_shape_the_model_takes(user: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, layout: str):
    """Grey 40x40 photos for an RGB model with a fixed 32x32 input and no recorded shape: the folder is read again,
    converted and resized, at the shape the model runs on (the first convolution's channels, a usual size) —
    photos in class sub-folders, or in one folder beside a table of their labels (Kaggle's train/ + train.csv)."""
    pytest.importorskip("PIL")
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    (tmp_path / "rgbnet.py").write_text(RGB_MODULE)
    rng = np.random.default_rng(0)
    table = ["image,label"]
    for label, bright in (("cat", 0), ("dog", 1)):
        folder = tmp_path / "photos" / (label if layout == "class folders" else "train")
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(20):
            pixels = rng.integers(0, 80, (40, 40), dtype=np.uint8)
            pixels[10:20] += 170 * bright
            Image.fromarray(pixels, "L").save(folder / f"{label}{i}.png")
            table.append(f"{label}{i}.png,{label}")
    if layout == "listed in a table":
        (tmp_path / "photos" / "train.csv").write_text("\n".join(table) + "\n")
    ns: dict = {}
    exec(RGB_MODULE, ns)
    torch.save(ns["Rgb32"]().state_dict(), "rgb_sd.pt")
    run(user, "convert", "rgb_sd.pt", "--arch", "rgbnet:Rgb32", "--data", "photos", "-o", "m.bnnc")
    recorded = load_checkpoint(tmp_path / "m.bnnc").preprocessing
    assert recorded["input_shape"] == [3, 32, 32] and recorded["class_names"] == ["cat", "dog"]


def test_required_arguments_missing_get_the_arch_kwargs_to_pass(user: Path, tmp_path: Path):
    """An architecture whose sizes are required arguments, built without them: the error gives the --arch-kwargs
    to pass, the sizes read from the weights (the first layer's inputs, the last layer's outputs), which work."""
    torch.save(build_user_model("required", in_features=784, n_classes=10).state_dict(), tmp_path / "req.pt")
    line = run(user, "convert", str(tmp_path / "req.pt"), "--arch", "{d}/usermodels.py:required", "-o",
               str(tmp_path / "x.bnnc"), code=2)
    fix = "--arch-kwargs '{\"in_features\": 784, \"n_classes\": 10}'"
    assert "missing 2 required positional arguments" in line and fix in line, line
    kwargs = json.loads(line.split("--arch-kwargs ")[1].strip("'"))
    run(user, "convert", str(tmp_path / "req.pt"), "--arch", "{d}/usermodels.py:required", "--arch-kwargs",
        json.dumps(kwargs), "-o", str(tmp_path / "x.bnnc"))


def build_user_model(name: str, **kwargs: int) -> torch.nn.Module:
    ns: dict = {}
    exec(USER_MODULE, ns)
    return ns[name](**kwargs)
