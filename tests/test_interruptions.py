"""kill -9 at any moment: no half-written file under a final name, and fine-tuning resumes exactly.

The killed runs are real ``python -m bnnc`` processes sent SIGKILL, so nothing in bnnc gets a
chance to clean up: what is on disk afterwards is what a crashed CI job would leave.
"""

from __future__ import annotations

import json
import os
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
    code = ("import sys, time\nfrom bnnc.outputs import atomic_write\n"
            "def write(f):\n    f.write(b'x' * 100000)\n    f.flush()\n    print('half', flush=True)\n"
            "    time.sleep(600)\n"
            "atomic_write(sys.argv[1], write)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"half\n"
    assert _temp_files(tmp_path, out.name), "the half-written bytes are in a hidden temporary file"
    _kill(proc)
    assert not out.exists()


# Runs bnnc with an audit hook that sends the process a real signal at a chosen step of writing an
# output: deterministic, where polling the disk from outside catches a non-atomic write only by luck.
_SIGNAL_AT = """
import os, runpy, signal, sys
finals = set(sys.argv[1].split(os.pathsep))
sig, step = getattr(signal, sys.argv[2]), sys.argv[3]
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal: a background job inherits SIGINT ignored
def _writes(args):
    return args[1] is not None and any(c in str(args[1]) for c in "wax+") or bool(args[2] & (os.O_WRONLY | os.O_RDWR))
def hook(event, args):
    if event == "open" and isinstance(args[0], str) and args[0] in finals and _writes(args):
        print("opened a final name for writing:", args[0], file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    renamed = event in ("os.link", "os.rename")
    target = os.fspath(args[1]) if renamed else os.fspath(args[0]) if event == "os.chmod" else ""
    temporary = tuple("." + os.path.basename(f) + "." for f in finals)
    if event == step and (target in finals or os.path.basename(target).startswith(temporary)):
        os.kill(os.getpid(), sig)
sys.addaudithook(hook)
sys.argv = ["bnnc", *sys.argv[4:]]
runpy.run_module("bnnc", run_name="__main__")
"""


def _signalled(finals: list[Path], sig: str, step: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``bnnc ARGS``; send ``sig`` when the run reaches ``step`` (os.chmod: the temporary file was just
    made; os.link/os.rename: it is whole and about to get its final name) for any of ``finals``."""
    return subprocess.run([sys.executable, "-c", _SIGNAL_AT, os.pathsep.join(map(str, finals)), sig, step, *args],
                          capture_output=True, text=True, timeout=300)


def _export_or_report(command: str, tmp_path: Path, model: Path) -> tuple[list[Path], list[str]]:
    data = learnable_npz(tmp_path, 256, 128)
    if command == "export":
        finals = [tmp_path / "m.onnx"]
        return finals, ["export", str(model), "-o", str(finals[0]), "--data", str(data)]
    finals = [tmp_path / "r.json", tmp_path / "r.md"]
    return finals, ["report", str(model), "--data", str(data), "--json-out", str(finals[0]),
                    "--markdown", str(finals[1]), "--batch", "8"]


@pytest.mark.parametrize("command", ["export", "report"])
def test_kill_9_during_export_or_report_never_leaves_a_partial_output(tmp_path: Path, model: Path, command: str):
    """Killed with the first output whole but not yet under its name: nothing under any final name, and
    the bytes in the temporary file are whole. A write straight to the final name is caught at its open."""
    finals, args = _export_or_report(command, tmp_path, model)
    left: set[Path] = set()
    for step in ("os.link", "os.rename"):
        p = _signalled(finals, "SIGKILL", step, *args, *(["--force"] if step == "os.rename" else []))
        assert "opened a final name" not in p.stderr, p.stderr
        assert p.returncode == -signal.SIGKILL, f"the run never reached {step}: {p.stderr}"
        assert not any(f.exists() for f in finals), "a final name appeared before its bytes were whole"
        temps = [t for f in finals for t in _temp_files(tmp_path, f.name) if t not in left]
        assert len(temps) == 1  # the one being renamed when the kill came, left behind as a crash leaves it
        left.update(temps)
        content = temps[0].read_bytes()
        if temps[0].name.startswith(".m.onnx"):
            onnx.checker.check_model(onnx.load_from_string(content))
        elif temps[0].name.startswith(".r.json"):
            json.loads(content)
        else:
            assert content.endswith(b"\n")
    r = runner.invoke(app, args)  # and a run afterwards writes them whole (the killed runs' temp files don't block it)
    assert r.exit_code == 0, r.output
    assert all(f.is_file() and f.stat().st_size > 0 for f in finals)


@pytest.mark.parametrize("step", ["os.chmod", "os.link"])
def test_ctrl_c_while_convert_writes_its_checkpoint(tmp_path: Path, fp32_checkpoint, step: str):
    """A real SIGINT inside the checkpoint write: one line, exit 130, no file under the final name, no
    temporary file left, and the input untouched."""
    src = fp32_checkpoint("mlp", preprocessing=PRE)
    before = src.read_bytes()
    out = tmp_path / "m.bnnc"
    p = _signalled([out], "SIGINT", step, "convert", str(src), "-o", str(out))
    assert p.returncode == 130, p.stderr
    assert p.stderr.strip().startswith("interrupted") and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert not out.exists() and not _temp_files(tmp_path, out.name)
    assert src.read_bytes() == before
