"""kill -9 at any moment: no half-written file under a final name, and fine-tuning resumes exactly.

The killed runs are real ``python -m bnnc`` processes sent SIGKILL, so nothing in bnnc gets a
chance to clean up: what is on disk afterwards is what a crashed CI job would leave.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
import torch
from conftest import PRE, learnable_npz
from typer.testing import CliRunner

from bnnc.cli import app
from bnnc.conversion import convert_file

runner = CliRunner()


def _start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bnnc", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)


def _wait_for(predicate, proc: subprocess.Popen[bytes], timeout: float = 120) -> bool:
    """Busy-wait until ``predicate()``; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return predicate()
    raise AssertionError("timed out")


def _temp_files(folder: Path, name: str) -> list[Path]:
    return list(folder.glob(f".{name}.*.tmp"))


@pytest.fixture
def model(tmp_path: Path, fp32_checkpoint) -> Path:
    return convert_file(fp32_checkpoint("mlp", preprocessing=PRE), tmp_path / "m.bnnc").output


def test_kill_9_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path: Path, model: Path):
    data = learnable_npz(tmp_path, 4096, 128)
    common = ["--data", str(data), "--epochs", "3", "--batch-size", "32", "--seed", "7"]

    whole = tmp_path / "whole.bnnc"
    r = runner.invoke(app, ["finetune", str(model), *common, "-o", str(whole)])
    assert r.exit_code == 0, r.output

    killed = tmp_path / "killed.bnnc"
    state = killed.with_name(killed.name + ".state")
    proc = _start("finetune", str(model), *common, "-o", str(killed))
    assert _wait_for(state.is_file, proc), proc.communicate()[1].decode()
    _kill(proc)  # as soon as epoch 1's state is on disk: the kill lands in epoch 2 (3 epochs of seconds each)
    assert proc.returncode == -signal.SIGKILL
    done = torch.load(state, weights_only=True)["epoch"]
    assert 1 <= done < 3, "the kill should land before the last epoch ends"

    r = runner.invoke(app, ["finetune", str(model), *common, "-o", str(killed), "--resume"])
    assert r.exit_code == 0, r.output
    a, b = torch.load(whole.with_name(whole.name + ".state"), weights_only=True), torch.load(state, weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), "resumed weights differ"
    for out in (whole, killed):  # the best checkpoint, too
        assert torch.load(out, weights_only=True)["state_dict"].keys() == a["model"].keys()
    sa, sb = (torch.load(p, weights_only=True)["state_dict"] for p in (whole, killed))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    ha, hb = (json.loads(p.with_name(p.stem + ".history.json").read_text())["epochs"] for p in (whole, killed))
    assert [e["val_accuracy"] for e in ha] == [e["val_accuracy"] for e in hb]
    assert [e["train_loss"] for e in ha] == [e["train_loss"] for e in hb]


def test_kill_9_inside_a_write_leaves_nothing_under_the_final_name(tmp_path: Path):
    """The moment that matters, made certain: the process is killed with half the bytes written."""
    out = tmp_path / "model.onnx"
    code = ("import sys, time\nfrom bnnc.io import atomic_write\n"
            "def write(f):\n    f.write(b'x' * 100000)\n    f.flush()\n    print('half', flush=True)\n"
            "    time.sleep(600)\n"
            "atomic_write(sys.argv[1], write)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"half\n"
    assert _temp_files(tmp_path, out.name), "the half-written bytes are in a hidden temporary file"
    _kill(proc)
    assert not out.exists()


@pytest.mark.parametrize("command", ["export", "report"])
def test_kill_9_during_export_or_report_never_leaves_a_partial_output(tmp_path: Path, model: Path, command: str):
    data = learnable_npz(tmp_path, 256, 128)
    if command == "export":
        finals = [tmp_path / "m.onnx"]
        args = ["export", str(model), "-o", str(finals[0]), "--data", str(data)]
    else:
        finals = [tmp_path / "r.json", tmp_path / "r.md"]
        args = ["report", str(model), "--data", str(data), "--json", str(finals[0]), "--markdown", str(finals[1]),
                "--batch", "8"]
    proc = _start(*args)  # killed the moment an output starts to appear, under any name
    first_seen: dict[Path, bytes] = {}

    def appeared() -> bool:  # the bytes under a final name the instant it appears: whole, or the write isn't atomic
        for f in finals:
            if f not in first_seen and f.exists():
                first_seen[f] = f.read_bytes()
        return bool(first_seen) or any(_temp_files(tmp_path, f.name) for f in finals)

    _wait_for(appeared, proc)
    _kill(proc)
    for final in finals:  # absent, or whole: never a prefix
        if final.exists():
            first_seen.setdefault(final, final.read_bytes())
    for final, content in first_seen.items():
        if final.suffix == ".onnx":
            onnx.checker.check_model(onnx.load_from_string(content))
        elif final.suffix == ".json":
            json.loads(content)
        else:
            assert content.endswith(b"\n"), f"{final.name} was seen cut short"
    for final in finals:  # and a run afterwards writes them whole (the killed run's temp files don't block it)
        final.unlink(missing_ok=True)
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert all(f.is_file() and f.stat().st_size > 0 for f in finals)
