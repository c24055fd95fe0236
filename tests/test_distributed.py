"""Data-parallel fine-tuning: 2 processes on the CPU (gloo) through `bnnc finetune --nproc 2`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import archs
import pytest
import torch

from bnnc import distributed
from bnnc.checkpoint import save_checkpoint
from bnnc.conversion import convert_file
from bnnc.data import load_data
from bnnc.errors import BnncError
from bnnc.loading import load_checkpoint
from bnnc.training import FinetuneConfig, finetune

SAMPLE = Path(__file__).resolve().parent.parent / "sample_models" / "data" / "fashion-mnist-sample.npz"


def _env(threads: int) -> dict[str, str]:
    """A subprocess's environment: ``threads`` per process, this folder on the path (``archs:AuxHeadMLP``)."""
    path = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "COLUMNS": "300", "OMP_NUM_THREADS": str(threads), "PYTHONPATH": path}


THREADS = 1
"""Threads per process on both sides of the comparison: float sums (and so thresholds) depend on it."""


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MLP, trained for an epoch (accuracies well above chance, so a comparison means something),
    converted with the bundled Fashion-MNIST sample (its preprocessing recorded). It has GoogLeNet's auxiliary
    head, used only while training, and a layer never called: parameters DDP must allow to get no gradient."""
    d = tmp_path_factory.mktemp("ddp")
    torch.manual_seed(0)
    model = archs.AuxHeadMLP().train()
    x, y = load_data(SAMPLE).train.tensors
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    for i in range(0, len(x), 128):
        loss = torch.nn.functional.cross_entropy(model(x[i:i + 128])[0], y[i:i + 128])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_checkpoint(d / "fp32.pt", state_dict=model.eval().state_dict(), arch="archs:AuxHeadMLP", arch_kwargs={})
    return convert_file(d / "fp32.pt", d / "m.bnnc", data=SAMPLE).output


@pytest.fixture(scope="module")
def two_processes(converted: Path) -> tuple[dict, str, Path]:
    """``bnnc finetune --nproc 2`` (torchrun, gloo): its JSON result, its stderr, its checkpoint."""
    out = converted.with_name("ddp.bnnc")
    r = subprocess.run([sys.executable, "-m", "bnnc", "finetune", str(converted), "--data", str(SAMPLE),
                        "--epochs", "1", "--batch-size", "64", "--no-distill", "--nproc", "2", "-o", str(out),
                        "--json"], capture_output=True, text=True, timeout=600,
                       env=_env(THREADS))  # COLUMNS 300: progress lines unwrapped
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count('"best_accuracy"') == 1  # rank 0 alone prints
    return json.loads(r.stdout[r.stdout.index("{"):]), r.stderr, out


def test_two_processes_write_a_valid_improved_checkpoint(two_processes):
    result, stderr, out = two_processes
    assert "× 2 processes" in stderr
    loaded = load_checkpoint(out)
    assert loaded.is_binarized and loaded.metrics["val_accuracy"] == result["best_accuracy"]
    assert result["best_accuracy"] > result["recalibrated_accuracy"] + 0.05, result  # measured: 71.8% -> 82.2%
    history = json.loads(out.with_name("ddp.history.json").read_text())
    assert history["epochs"][0]["samples_per_s"] > 0


def test_two_processes_and_one_agree_within_noise(two_processes, converted: Path, tmp_path: Path):
    result, _, _ = two_processes
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)  # as each torchrun process: the same float sums, the same thresholds
    try:
        single = finetune(converted, SAMPLE, FinetuneConfig(epochs=1, batch_size=64, distill=False),
                          tmp_path / "one.bnnc")
    finally:
        torch.set_num_threads(threads)
    assert single.recalibrated_accuracy == result["recalibrated_accuracy"] > 0.5  # the same start, not chance
    assert abs(single.best_accuracy - result["best_accuracy"]) < 0.02, (single.best_accuracy, result)


def test_bad_input_with_nproc_is_one_line_before_any_launch(converted: Path, tmp_path: Path):
    r = subprocess.run([sys.executable, "-m", "bnnc", "finetune", str(converted), "--data",
                        str(tmp_path / "none.npz"), "--nproc", "2"], capture_output=True, text=True, timeout=120,
                       env=_env(1))
    assert r.returncode == 2
    assert [line for line in r.stderr.splitlines() if line.strip()] == [
        next(line for line in r.stderr.splitlines() if line.startswith("error: data not found"))]


def test_one_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    world, device = distributed.join(torch.device("cpu"))
    assert world == distributed.SINGLE and not world.distributed and device.type == "cpu"
    assert distributed.sampler(torch.utils.data.TensorDataset(torch.zeros(4)), world, 0) is None
    assert distributed.total([1.0, 2.0], world, device) == [1.0, 2.0]


def test_the_global_batch_is_split_across_processes():
    assert distributed.local_batch_size(128, distributed.World(0, 4)) == 32
    with pytest.raises(BnncError, match="smaller than the 4 processes"):
        distributed.local_batch_size(2, distributed.World(0, 4))


def _processes_naming(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")
def test_kill_9_of_bnnc_takes_torchrun_and_its_workers_down(converted: Path, tmp_path: Path):
    import signal
    import time

    out = tmp_path / "orphans.bnnc"
    proc = subprocess.Popen([sys.executable, "-m", "bnnc", "finetune", str(converted), "--data", str(SAMPLE),
                             "--epochs", "50", "--batch-size", "64", "--no-distill", "--nproc", "2", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env(1))
    state = out.with_name(out.name + ".state")
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:  # training, past start-up
        time.sleep(0.1)
    assert len(_processes_naming(str(out))) >= 4, "bnnc, torchrun and 2 workers should be running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while _processes_naming(str(out)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _processes_naming(str(out))
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{len(left)} processes outlived bnnc"
