"""Bad input to any command: one line on stderr, exit 2, no traceback, and no file written or changed.

One table of cases across convert, finetune, export, report and compress, run against one shared
folder of good and bad files; each case checks the folder is byte-for-byte as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PRE, SMALL_ARCHS, build, learnable_npz
from torch import nn
from typer.testing import CliRunner

from bnnc import zoo
from bnnc.checkpoint import save_checkpoint
from bnnc.cli import app
from bnnc.conversion import convert_file

runner = CliRunner()
MLP_REF, MLP_KWARGS = SMALL_ARCHS["mlp"]

NO_LAYERS_MODULE = '''
import torch
from torch import nn


class Net(nn.Module):
    """No Linear or Conv layer: nothing to binarize."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(784)

    def forward(self, x):
        return self.norm(x.flatten(1))


class BatchStats(nn.Module):
    """A BatchNorm that keeps no running statistics: each batch normalised by its own, in eval too."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.BatchNorm1d(64, track_running_stats=False),
                                  nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.body(x)


class Text(nn.Module):
    """A text classifier: token ids in, through an embedding."""

    def __init__(self):
        super().__init__()
        self.emb, self.fc = nn.Embedding(300, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(self.emb(x).mean(1))


class OneOutput(nn.Module):
    """A binary classifier's one output: a logit, a probability (``sigmoid``), squeezed to ``(N,)`` or ``(N, 1, 1,
    1)``."""

    def __init__(self, end="logit"):
        super().__init__()
        self.end = end
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, x):
        z = self.body(x)
        if self.end == "conv-head":  # a convolutional head's (N, classes, 1, 1), not flattened
            return z[:, :, None, None]
        return torch.sigmoid(z) if self.end == "sigmoid" else z.squeeze(1) if self.end == "squeeze" else z
'''


def _npz(path: Path, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray | None = None,
         y_test: np.ndarray | None = None) -> None:
    np.savez(path, x_train=x_train, y_train=y_train,
             x_test=x_train if x_test is None else x_test, y_test=y_train if y_test is None else y_test)


def _foreign_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 784])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 784])])
    onnx.save(helper.make_model(graph), path)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one good model/data set and one file for each way input can be bad."""
    d = tmp_path_factory.mktemp("ws")
    fp32 = d / "fp32.pt"
    save_checkpoint(fp32, state_dict=build("mlp").state_dict(), arch=MLP_REF, arch_kwargs=MLP_KWARGS,
                    preprocessing=PRE)
    convert_file(fp32, d / "m.bnnc")
    (d / "data").mkdir()
    data = learnable_npz(d / "data", 256, 64)
    data.rename(d / "data.npz")
    (d / "data").rmdir()

    torch.save(build("mlp").state_dict(), d / "sd.pt")
    torch.manual_seed(0)
    torch.save(zoo.MLP(**MLP_KWARGS, num_classes=1).state_dict(), d / "one-logit.pt")  # a binary classifier
    (d / "empty.pt").write_bytes(b"")
    (d / "random.pt").write_bytes(random.Random(0).randbytes(4096))
    whole = fp32.read_bytes()
    (d / "truncated.pt").write_bytes(whole[: len(whole) // 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated; users still have archives
        torch.jit.script(nn.Linear(2, 2)).save(str(d / "script.pt"))
    _foreign_onnx(d / "foreign.onnx")
    (d / "onnx-named.pt").write_bytes((d / "foreign.onnx").read_bytes())
    for name, value in (("nan.pt", float("nan")), ("inf.pt", float("inf"))):
        model = build("mlp")
        with torch.no_grad():
            model.features[1].weight[0, 0] = value
        save_checkpoint(d / name, state_dict=model.state_dict(), arch=MLP_REF, arch_kwargs=MLP_KWARGS)
    (d / "nolayers.py").write_text(NO_LAYERS_MODULE)
    save_checkpoint(d / "nolayers.pt", state_dict=nn.BatchNorm1d(784).state_dict(prefix="norm."),
                    arch="nolayers:Net")
    ns: dict = {}
    exec(NO_LAYERS_MODULE, ns)
    torch.save(ns["BatchStats"]().state_dict(), d / "batchstats.pt")
    torch.save(ns["Text"]().state_dict(), d / "text.pt")
    torch.save(ns["OneOutput"]().state_dict(), d / "one-output.pt")
    _npz(d / "tokens.npz", np.random.default_rng(0).integers(0, 300, (32, 20)), np.arange(32) % 4)

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (32, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 32)
    _npz(d / "shape.npz", rng.integers(0, 255, (32, 27, 27), dtype=np.uint8), labels)
    _npz(d / "dtype.npz", pixels.astype(np.complex64), labels)
    _npz(d / "labels.npz", pixels, labels + 10)
    _npz(d / "negative.npz", pixels, labels - 5)
    _npz(d / "nosamples.npz", pixels[:0], labels[:0])
    _npz(d / "labels-15.npz", pixels, labels + 6)  # no class names: only the model's 10 outputs bound them
    save_checkpoint(d / "gone.pt", state_dict=build("mlp").state_dict(), arch=MLP_REF, arch_kwargs=MLP_KWARGS,
                    preprocessing=PRE)
    convert_file(d / "gone.pt", d / "orphan.bnnc")
    (d / "gone.pt").unlink()  # the FP32 source moved away after conversion
    (d / "unknown-key.toml").write_text("max_acuracy_drop = 1.0\n")
    (d / "wrong-type.toml").write_text('epochs = "three"\n')
    (d / "existing.bnnc").write_bytes(b"keep me")
    (d / "existing.bin").write_bytes(b"keep me too")  # the weights half of an IR named existing.xml
    (d / "a-file").write_bytes(b"not a folder")
    os.link(fp32, d / "hardlink.pt")  # the input under another name
    os.mkfifo(d / "fifo")
    (d / "o.bnnc.state").write_bytes((d / "m.bnnc").read_bytes())  # the side file of -o o.bnnc, given as the input
    for name, text in (("code-data.toml", 'data = "sys:exit"\n'), ("file-data.toml", 'data = "loader.py:load"\n'),
                       ("samples-0.toml", "samples = 0\n"), ("openvino-gate.toml", "min_openvino_speedup = 1.0\n"),
                       ("batch-0.toml", "batch = 0\n"), ("threads-negative.toml", "threads = -1\n"),
                       ("batch-huge.toml", "batch = 1000000000000000\n"), ("samples-negative.toml", "samples = -5\n")):
        (d / name).write_text(text)
    _npz(d / "huge.npz", np.full((32, 28, 28), 1e300), labels)
    (d / "words.csv").write_text("a,b,label\n1,2,0\n3,n/a,1\n")
    _broken_png_folder(d / "imgs")
    _image_listings(d)
    _zip_bomb(d / "sd.pt", d / "bomb.pt")
    for name, tamper in (("options-none", lambda r: r["binarized"].__setitem__("options", None)),
                         ("preprocessing-list", lambda r: r.__setitem__("preprocessing", [1, 2])),
                         ("negative-shape", lambda r: r["preprocessing"].__setitem__("input_shape", [-1, 28, 28])),
                         ("metrics-list", lambda r: r.__setitem__("metrics", [1])),
                         ("source-string", lambda r: r["binarized"].__setitem__("source", "x"))):
        copy = torch.load(d / "m.bnnc", weights_only=True)
        tamper(copy)
        torch.save(copy, d / f"tampered-{name}.bnnc")
    return d


def _zip_bomb(archive: Path, out: Path) -> None:
    """``archive`` with its data.pkl padded to 300 MB and deflated to a few hundred KB."""
    import zipfile

    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                z.writestr(info.filename, data + b"\0" * (300 << 20), compress_type=zipfile.ZIP_DEFLATED)
            else:
                z.writestr(info, data)


def _broken_png_folder(root: Path) -> None:
    """An image folder (train/test, classes a and b) with one PNG that makes Pillow raise SyntaxError."""
    import io

    from PIL import Image

    for split in ("train", "test"):
        for c in "ab":
            (root / split / c).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(root / split / c / f"{i}.png")
    buf = io.BytesIO()
    Image.fromarray((np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)).save(buf, "PNG")
    good = buf.getvalue()
    junk = b"\x00\x00\x00\x05JUNK!\x00\x00\x00\x00"
    (root / "train" / "a" / "broken.png").write_bytes(good[:110] + junk + good[110:])


def _image_listings(d: Path) -> None:
    """Kaggle's layout with one image missing (``listed/``), and its images alone, the table forgotten (``flat/``)."""
    from PIL import Image

    for folder in ("listed/train", "flat/train"):
        (d / folder).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(d / folder / f"{i}.png")
    (d / "listed" / "train.csv").write_text("id,label\n0.png,1\n1.png,0\n2.png,1\n3.png,0\n7.png,1\n")


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def _unwritable_folder(ws: Path) -> Path:
    """A folder bnnc can't write in: a read-only one, or /proc where permissions don't bind (root)."""
    if os.geteuid() == 0:
        return Path("/proc")
    ro = ws.parent / "read-only"
    ro.mkdir(exist_ok=True)
    ro.chmod(0o555)
    return ro


@dataclass(frozen=True)
class Case:
    id: str
    args: Callable[[Path], list[str]]
    message: str


def case(id: str, message: str, *args: str) -> Case:
    """``{ws}`` in an argument is the shared folder."""
    return Case(id, lambda ws: [a.replace("{ws}", str(ws)) for a in args], message)


CONVERT = [
    case("missing-path", "no such file", "convert", "{ws}/missing.pt"),
    case("directory", "is a directory", "convert", "{ws}"),
    case("empty-file", "is empty", "convert", "{ws}/empty.pt"),
    case("random-bytes", "not a readable PyTorch checkpoint", "convert", "{ws}/random.pt"),
    case("truncated", "not a readable PyTorch checkpoint", "convert", "{ws}/truncated.pt"),
    case("torchscript", "TorchScript", "convert", "{ws}/script.pt"),
    case("onnx-as-model", "is an ONNX model", "convert", "{ws}/foreign.onnx"),
    case("onnx-named-pt", "is an ONNX model", "convert", "{ws}/onnx-named.pt"),
    case("state-dict-no-arch", "--arch", "convert", "{ws}/sd.pt"),
    case("arch-does-not-import", "can't import 'no_such_pkg'", "convert", "{ws}/sd.pt", "--arch", "no_such_pkg:Net"),
    case("arch-file-missing", "no Python file", "convert", "{ws}/sd.pt", "--arch", "{ws}/models/none.py:Net"),
    case("arch-not-of-form", "pkg.module:factory", "convert", "{ws}/sd.pt", "--arch", "Net"),
    case("arch-keys-differ", "don't fit", "convert", "{ws}/sd.pt", "--arch", "bnnc.zoo:VGG"),
    case("arch-other-class-count", "has 10 outputs, the architecture's 3: pass the class count, --arch-kwargs "
         "'{\"num_classes\": 10}'", "convert", "{ws}/sd.pt", "--arch", MLP_REF, "--arch-kwargs",
         '{"hidden": [64, 48], "in_features": 784, "num_classes": 3}'),
    case("no-linear-or-conv", "no Linear or Conv", "convert", "{ws}/nolayers.pt", "-o", "{ws}/x.bnnc"),
    case("nan-weights", "NaN or inf", "convert", "{ws}/nan.pt", "-o", "{ws}/x.bnnc"),
    case("inf-weights", "NaN or inf", "convert", "{ws}/inf.pt", "-o", "{ws}/x.bnnc"),
    case("output-is-input", "is the input", "convert", "{ws}/fp32.pt", "-o", "{ws}/fp32.pt", "--force"),
    case("output-folder-missing", "does not exist", "convert", "{ws}/fp32.pt", "-o", "{ws}/no/x.bnnc"),
    case("output-exists", "--force", "convert", "{ws}/fp32.pt", "-o", "{ws}/existing.bnnc"),
    case("output-is-directory", "is a directory", "convert", "{ws}/fp32.pt", "-o", "{ws}"),
    case("input-shape-conflict", "conflicts with the input shape 1,28,28", "convert", "{ws}/fp32.pt",
         "--input-shape", "784", "-o", "{ws}/x.bnnc"),
    case("data-does-not-fit-the-arch", "doesn't run on samples of shape (1, 27, 27)", "convert", "{ws}/sd.pt",
         "--arch", MLP_REF, "--arch-kwargs", '{"hidden": [64, 48], "in_features": 784}', "--data",
         "{ws}/shape.npz", "-o", "{ws}/x.bnnc"),
    case("labels-beyond-the-outputs", "but the model has 10 outputs", "convert", "{ws}/sd.pt", "--arch", MLP_REF,
         "--arch-kwargs", '{"hidden": [64, 48], "in_features": 784}', "--data", "{ws}/labels-15.npz",
         "-o", "{ws}/x.bnnc"),
    case("sigmoid-output", "one output is a sigmoid (a probability)", "convert", "{ws}/one-output.pt", "--arch",
         "nolayers:OneOutput", "--arch-kwargs", '{"end": "sigmoid"}', "--data", "{ws}/data.npz", "-o", "{ws}/x.bnnc"),
    case("squeezed-logit", "drop the .squeeze()", "convert", "{ws}/one-output.pt", "--arch", "nolayers:OneOutput",
         "--arch-kwargs", '{"end": "squeeze"}', "--data", "{ws}/data.npz", "-o", "{ws}/x.bnnc"),
    case("conv-head-unflattened", "torch.flatten(x, 1)", "convert", "{ws}/one-output.pt", "--arch",
         "nolayers:OneOutput", "--arch-kwargs", '{"end": "conv-head"}', "--data", "{ws}/data.npz", "-o", "{ws}/x.bnnc"),
    case("ten-classes-one-logit", "has one output (a logit: classes 0 and 1)", "convert", "{ws}/one-logit.pt",
         "--arch", MLP_REF, "--arch-kwargs", '{"hidden": [64, 48], "in_features": 784, "num_classes": 1}', "--data",
         "{ws}/data.npz", "-o", "{ws}/x.bnnc"),
]
FINETUNE = [
    case("finetune-fp32-model", "bnnc convert", "finetune", "{ws}/fp32.pt", "--data", "{ws}/data.npz"),
    # no --data: the data the model records is looked for first, and a MODEL that isn't there is the error
    case("finetune-missing-model", "no such file", "finetune", "{ws}/missing.bnnc"),
    case("export-missing-model", "no such file", "export", "{ws}/missing.bnnc"),
    case("report-missing-model", "no such file", "report", "{ws}/missing.bnnc"),
    case("report-model-directory", "is a directory", "report", "{ws}"),
    case("finetune-data-missing", "missing.npz", "finetune", "{ws}/m.bnnc", "--data", "{ws}/missing.npz"),
    case("finetune-data-shape", "can't be reshaped", "finetune", "{ws}/m.bnnc", "--data", "{ws}/shape.npz"),
    case("finetune-data-dtype", "complex64", "finetune", "{ws}/m.bnnc", "--data", "{ws}/dtype.npz"),
    case("finetune-label-range", "label", "finetune", "{ws}/m.bnnc", "--data", "{ws}/labels.npz"),
    case("finetune-negative-labels", "label", "finetune", "{ws}/m.bnnc", "--data", "{ws}/negative.npz"),
    case("finetune-no-samples", "no samples", "finetune", "{ws}/m.bnnc", "--data", "{ws}/nosamples.npz"),
    case("finetune-table-cell", "line 3, column 'b': 'n/a' is not a number", "finetune", "{ws}/m.bnnc", "--data",
         "{ws}/words.csv"),
    case("finetune-data-is-model", "expected keys x_train", "finetune", "{ws}/m.bnnc", "--data", "{ws}/fp32.pt"),
    case("finetune-epochs-0", "--epochs", "finetune", "{ws}/m.bnnc", "--data", "{ws}/data.npz", "--epochs", "0"),
    case("finetune-epochs-negative", "--epochs", "finetune", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--epochs", "-2"),
    case("finetune-batch-size-0", "--batch-size", "finetune", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--batch-size", "0"),
    case("finetune-output-is-input", "is the input", "finetune", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "-o", "{ws}/m.bnnc", "--force"),
    case("finetune-output-exists", "--force", "finetune", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "-o", "{ws}/existing.bnnc"),
    case("finetune-nothing-to-resume", "nothing to resume", "finetune", "{ws}/m.bnnc", "--data",
         "{ws}/data.npz", "-o", "{ws}/new.bnnc", "--resume"),
    case("finetune-unwritable-output", "can't write in the folder", "finetune", "{ws}/m.bnnc", "--data",
         "{ws}/data.npz",
         "-o", "{unwritable}/x.bnnc"),
    case("finetune-source-moved", "gone.pt, which is not there (the distillation teacher)", "finetune",
         "{ws}/orphan.bnnc", "--data", "{ws}/data.npz", "-o", "{ws}/x.bnnc"),
    case("finetune-teacher-binarized", "is a binarized checkpoint, not an FP32 model", "finetune", "{ws}/m.bnnc",
         "--data", "{ws}/data.npz", "--teacher", "{ws}/m.bnnc", "-o", "{ws}/x.bnnc"),
    case("finetune-teacher-missing", "no such file", "finetune", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--teacher", "{ws}/missing.pt", "-o", "{ws}/x.bnnc"),
    case("finetune-teacher-sd-bad-arch", "can't import 'no_such_pkg'", "finetune", "{ws}/m.bnnc", "--data",
         "{ws}/data.npz", "--teacher", "{ws}/sd.pt", "--arch", "no_such_pkg:Net", "-o", "{ws}/x.bnnc"),
]
EXPORT = [
    case("export-fp32-model", "bnnc convert", "export", "{ws}/fp32.pt"),
    case("export-random-bytes", "not a readable PyTorch checkpoint", "export", "{ws}/random.pt"),
    case("export-output-exists", "--force", "export", "{ws}/m.bnnc", "-o", "{ws}/existing.bnnc"),
    case("export-output-is-input", "is the input", "export", "{ws}/m.bnnc", "-o", "{ws}/m.bnnc", "--force"),
    case("export-output-folder-missing", "does not exist", "export", "{ws}/m.bnnc", "-o", "{ws}/no/m.onnx"),
    case("export-check-samples-0", "--check-samples", "export", "{ws}/m.bnnc", "--check-samples", "0"),
    case("export-check-data-shape", "can't be reshaped", "export", "{ws}/m.bnnc", "-o", "{ws}/x.onnx",
         "--data", "{ws}/shape.npz"),
    case("export-labels-beyond-the-outputs", "labels from 6 to 15", "export", "{ws}/m.bnnc", "-o", "{ws}/x.onnx",
         "--data", "{ws}/labels-15.npz"),
]
REPORT = [
    case("report-foreign-onnx", "bnnc", "report", "{ws}/m.bnnc", "--onnx", "{ws}/foreign.onnx",
         "--data", "{ws}/data.npz"),
    case("report-config-unknown-key", "max_acuracy_drop", "report", "{ws}/m.bnnc", "--config",
         "{ws}/unknown-key.toml"),
    case("report-config-wrong-type", "epochs must be int", "report", "{ws}/m.bnnc", "--config",
         "{ws}/wrong-type.toml"),
    case("report-config-missing", "config file not found", "report", "{ws}/m.bnnc", "--config", "{ws}/none.toml"),
    case("report-data-labels", "label", "report", "{ws}/m.bnnc", "--data", "{ws}/labels.npz"),
    case("report-openvino-gate-without-openvino", "--no-openvino", "report", "{ws}/m.bnnc", "--data",
         "{ws}/data.npz", "--no-openvino", "--min-openvino-speedup", "1"),
    case("report-openvino-gate-from-config-without-openvino", "min_openvino_speedup", "report", "{ws}/m.bnnc",
         "--data", "{ws}/data.npz", "--no-openvino", "--config", "{ws}/openvino-gate.toml"),
    case("report-json-folder-missing", "does not exist", "report", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--json-out", "{ws}/no/r.json"),
    case("report-markdown-exists", "--force", "report", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--markdown", "{ws}/existing.bnnc"),
    case("report-fp32-model", "bnnc convert", "report", "{ws}/fp32.pt", "--data", "{ws}/data.npz"),
    case("report-source-moved", "gone.pt, which is not there", "report", "{ws}/orphan.bnnc", "--data",
         "{ws}/data.npz"),
    case("report-fp32-is-binarized", "is a binarized checkpoint", "report", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--fp32", "{ws}/m.bnnc"),
]
COMPRESS = [
    case("compress-missing-model", "no such file", "compress", "{ws}/missing.pt", "--data", "{ws}/data.npz"),
    case("compress-data-shape", "can't be reshaped", "compress", "{ws}/fp32.pt", "--data", "{ws}/shape.npz",
         "-o", "{ws}/out"),
    case("compress-config-unknown-key", "max_acuracy_drop", "compress", "{ws}/fp32.pt", "--config",
         "{ws}/unknown-key.toml"),
    case("compress-output-is-a-file", "a-file", "compress", "{ws}/fp32.pt", "--data", "{ws}/data.npz",
         "-o", "{ws}/a-file"),
    case("compress-binarized-model", "FP32", "compress", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "-o", "{ws}/out"),
    case("compress-teacher-missing", "no such file", "compress", "{ws}/fp32.pt", "--data", "{ws}/data.npz",
         "--teacher", "{ws}/missing.pt", "-o", "{ws}/out"),
    case("compress-input-shape-conflict", "conflicts with the input shape", "compress", "{ws}/fp32.pt", "--data",
         "{ws}/data.npz", "--input-shape", "784", "-o", "{ws}/out"),
    case("compress-arch-kwargs-not-json", "--arch-kwargs", "compress", "{ws}/sd.pt", "--arch", MLP_REF,
         "--arch-kwargs", "{hidden", "--data", "{ws}/data.npz", "-o", "{ws}/out"),
]
# --force replaces an earlier output, never an input and never something that isn't a regular file
OVERWRITES = [
    case("convert-output-is-the-data", "is the input", "convert", "{ws}/fp32.pt", "--data", "{ws}/data.npz",
         "-o", "{ws}/data.npz", "--force"),
    case("convert-output-is-a-hard-link-of-the-input", "is the input", "convert", "{ws}/fp32.pt",
         "-o", "{ws}/hardlink.pt", "--force"),
    case("convert-output-is-a-device", "not a regular file", "convert", "{ws}/fp32.pt", "-o", "/dev/null", "--force"),
    case("convert-output-is-a-fifo", "not a regular file", "convert", "{ws}/fp32.pt", "-o", "{ws}/fifo", "--force"),
    case("convert-output-names-a-folder", "names a folder", "convert", "{ws}/fp32.pt", "-o", "{ws}/newdir/"),
    case("finetune-output-is-the-data", "is the input", "finetune", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "-o", "{ws}/data.npz", "--force"),
    case("finetune-history-is-the-data", "is the input", "finetune", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "-o", "{ws}/x.bnnc", "--history", "{ws}/data.npz", "--force"),
    case("finetune-output-is-the-teacher", "is the input", "finetune", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--teacher", "{ws}/fp32.pt", "-o", "{ws}/fp32.pt", "--force"),
    case("finetune-side-file-is-the-input", "is the input", "finetune", "{ws}/o.bnnc.state", "--data",
         "{ws}/data.npz", "-o", "{ws}/o.bnnc", "--force"),
    case("export-output-is-the-data", "is the input", "export", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "-o", "{ws}/data.npz", "--force"),
    case("report-json-is-the-data", "is the input", "report", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--json-out", "{ws}/data.npz", "--force"),
    case("report-markdown-is-the-fp32-model", "is the input", "report", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--fp32", "{ws}/fp32.pt", "--markdown", "{ws}/fp32.pt", "--force"),
    case("report-html-is-the-onnx", "is the input", "report", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--onnx", "{ws}/foreign.onnx", "--html", "{ws}/foreign.onnx", "--force"),
    case("report-json-names-a-folder", "names a folder", "report", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--json-out", "{ws}/newdir/"),
    case("finetune-history-names-a-folder", "names a folder", "finetune", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "-o", "{ws}/x.bnnc", "--history", "{ws}/newdir/"),
    case("report-two-outputs-one-file", "one file", "report", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--json-out", "{ws}/r.out", "--markdown", "{ws}/r.out"),
]
# values that crashed bnnc (internal errors) or did something else than the user asked
VALUES = [
    case("finetune-batch-size-2**64", "--batch-size", "finetune", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--batch-size", str(2**64)),
    case("finetune-seed-2**70", "--seed", "finetune", "{ws}/m.bnnc", "--data", "{ws}/data.npz", "--seed", str(2**70)),
    case("finetune-lr-1e30", "--lr", "finetune", "{ws}/m.bnnc", "--data", "{ws}/data.npz", "--lr", "1e30"),
    case("finetune-temperature-inf", "--temperature", "finetune", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--temperature", "inf"),
    case("finetune-temperature-tiny", "--temperature", "finetune", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--temperature", "1e-45"),
    case("finetune-weight-decay-inf", "--weight-decay", "finetune", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--weight-decay", "inf"),
    case("finetune-data-too-large-for-float32", "too large for float32", "finetune", "{ws}/m.bnnc", "--data",
         "{ws}/huge.npz"),
    case("convert-target-size-nan", "--target-size", "convert", "{ws}/fp32.pt", "--data", "{ws}/data.npz",
         "--target-size", "nan"),
    case("convert-target-size-inf", "--target-size", "convert", "{ws}/fp32.pt", "--data", "{ws}/data.npz",
         "--target-size", "inf"),
    case("convert-max-accuracy-drop-nan", "--max-accuracy-drop", "convert", "{ws}/fp32.pt", "--data",
         "{ws}/data.npz", "--max-accuracy-drop", "nan"),
    case("export-check-samples-10**12", "--check-samples", "export", "{ws}/m.bnnc", "--check-samples", str(10**12)),
    case("export-openvino-not-xml", "pass -o NAME.xml", "export", "{ws}/m.bnnc", "--format", "openvino", "-o",
         "{ws}/x.onnx"),
    case("export-openvino-float", "--format onnx only", "export", "{ws}/m.bnnc", "--format", "openvino", "--float",
         "-o", "{ws}/x.xml"),
    case("export-openvino-bin-exists", "--force", "export", "{ws}/m.bnnc", "--format", "openvino", "-o",
         "{ws}/existing.xml"),
    case("export-unknown-format", "is not one of", "export", "{ws}/m.bnnc", "--format", "tflite"),
    case("compress-unknown-format", "unknown export format", "compress", "{ws}/fp32.pt", "--data", "{ws}/data.npz",
         "-o", "{ws}/out", "--format", "onnx,tflite"),
    case("report-max-accuracy-drop-nan", "--max-accuracy-drop", "report", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--max-accuracy-drop", "nan"),
    case("report-data-function-sys-exit", "'sys' defines no data loader", "report", "{ws}/m.bnnc", "--data",
         "sys:exit", "--min-compression", "1000"),
    case("report-config-data-names-code", "names code to run", "report", "{ws}/m.bnnc", "--config",
         "{ws}/code-data.toml", "--min-compression", "1000"),
    case("report-config-samples-0", "samples must be between", "report", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--config", "{ws}/samples-0.toml"),
    case("report-config-batch-0", "batch must be between", "report", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--config", "{ws}/batch-0.toml"),
    case("report-config-threads-negative", "threads must be between", "report", "{ws}/m.bnnc", "--data",
         "{ws}/data.npz", "--config", "{ws}/threads-negative.toml"),
    case("report-config-batch-huge", "batch must be between", "report", "{ws}/m.bnnc", "--data", "{ws}/data.npz",
         "--config", "{ws}/batch-huge.toml"),
    case("compress-config-samples-negative", "samples must be between", "compress", "{ws}/fp32.pt", "--data",
         "{ws}/data.npz", "--config", "{ws}/samples-negative.toml", "-o", "{ws}/out"),
    case("convert-broken-png", "can't read as an image", "convert", "{ws}/sd.pt", "--arch", MLP_REF, "--arch-kwargs",
         json.dumps(MLP_KWARGS), "--data", "{ws}/imgs", "-o", "{ws}/x.bnnc"),
    case("convert-listed-image-missing", "line 6: no image '7.png'", "convert", "{ws}/sd.pt", "--arch", MLP_REF,
         "--arch-kwargs", json.dumps(MLP_KWARGS), "--data", "{ws}/listed", "-o", "{ws}/x.bnnc"),
    case("report-no-model-and-several-here", "pass the one meant: bnnc report MODEL.bnnc", "report", "--data",
         "{ws}/data.npz"),
    case("convert-images-of-one-class-folder", "one class sub-folder, 'train'", "convert", "{ws}/sd.pt", "--arch",
         MLP_REF, "--arch-kwargs", json.dumps(MLP_KWARGS), "--data", "{ws}/flat", "-o", "{ws}/x.bnnc"),
    *[case(f"export-tampered-{name}", "malformed", "export", f"{{ws}}/tampered-{name}.bnnc", "-o", "{ws}/x.onnx")
      for name in ("options-none", "preprocessing-list", "negative-shape", "metrics-list", "source-string")],
    case("convert-zip-bomb", "unpacks to 0.3 GiB", "convert", "{ws}/bomb.pt", "--arch", MLP_REF, "-o", "{ws}/x.bnnc"),
    case("finetune-zip-bomb-data", "unpacks to 0.3 GiB", "finetune", "{ws}/m.bnnc", "--data", "{ws}/bomb.pt"),
    case("compress-config-data-names-code", "names code to run", "compress", "{ws}/fp32.pt", "--config",
         "{ws}/code-data.toml", "-o", "{ws}/out"),
    case("compress-batchnorm-without-running-statistics", "without running statistics", "compress",
         "{ws}/batchstats.pt", "--arch", "nolayers:BatchStats", "--data", "{ws}/data.npz", "-o", "{ws}/out"),
    case("compress-config-data-names-a-file-of-code", "names code to run", "compress", "{ws}/fp32.pt", "--config",
         "{ws}/file-data.toml", "-o", "{ws}/out"),
    case("compress-token-ids", "the model takes token ids: its first layer, 'emb', is an Embedding", "compress",
         "{ws}/text.pt", "--arch", "nolayers:Text", "--data", "{ws}/tokens.npz", "-o", "{ws}/out"),
    case("convert-token-ids-without-data", "takes token ids", "convert", "{ws}/text.pt", "--arch", "nolayers:Text",
         "-o", "{ws}/x.bnnc"),
]
CASES = CONVERT + FINETUNE + EXPORT + REPORT + COMPRESS + OVERWRITES + VALUES


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(bad: Case, ws: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ws)  # --arch modules and bnnc.toml are looked for in the working directory
    args = [a.replace("{unwritable}", str(_unwritable_folder(ws))) for a in bad.args(ws)]
    before = _snapshot(ws)
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and bad.message in lines[0], lines[0]
    assert _snapshot(ws) == before


@pytest.mark.parametrize("command", ["convert", "finetune", "export", "report", "compress"])
def test_debug_shows_the_traceback(command: str, ws: Path):
    data = [] if command in {"convert", "export"} else ["--data", str(ws / "data.npz")]
    args = [command, str(ws / "random.pt"), *data]
    # where the hints say "re-run with --debug": before the command, or after it, as people add it
    for line in (["--debug", *args], [*args, "--debug"]):
        r = runner.invoke(app, line)
        assert r.exit_code == 2 and "Traceback" in r.stderr and "not a readable PyTorch checkpoint" in r.stderr, line
    r = runner.invoke(app, [*args, "--", "--debug"])  # after "--" it is an argument, not the option
    assert r.exit_code == 2 and "Traceback" not in r.stderr


def test_batch_size_larger_than_the_data_works(ws: Path, tmp_path: Path):
    out = tmp_path / "big-batch.bnnc"
    r = runner.invoke(app, ["finetune", str(ws / "m.bnnc"), "--data", str(ws / "data.npz"), "--epochs", "1",
                            "--batch-size", "100000", "-o", str(out), "--no-recalibrate"])
    assert r.exit_code == 0, r.output
    assert out.is_file()
