"""Data-parallel fine-tuning under ``torchrun``: one process per device, gradients all-reduced.

``torchrun --nproc_per_node=N -m bnnc finetune ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; :func:`join` reads them and joins the process group (gloo on the CPU, nccl on
CUDA). Every process loads the same checkpoint and data, trains on its shard of each epoch's
shuffle, and keeps identical weights (DDP averages the gradients); only rank 0 reports and writes
files. ``--batch-size`` stays the global batch, split across the processes, so the learning
dynamics match a single-process run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from bnnc.errors import BnncError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def main_process() -> bool:
    """Whether this process reports (rank 0 under torchrun, or the only process)."""
    return int(os.environ.get("RANK", "0")) == 0


LAUNCHER = "BNNC_LAUNCHER_PID"
"""Set by ``bnnc finetune --nproc`` for torchrun's workers: the bnnc process that launched torchrun."""


def die_with_parent(grandparent: int | None = None) -> None:
    """Have the kernel kill this process when its parent dies (Linux; elsewhere nothing): a ``kill -9`` of
    ``bnnc finetune --nproc N`` then takes torchrun down, and torchrun takes its workers. A worker whose
    torchrun (or its bnnc, ``grandparent``) is already gone when it gets here exits at once."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = os.getppid()
    if parent == 1 or (grandparent is not None and _parent_of(parent) != grandparent):
        os._exit(1)


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm) state": the parent's pid


def die_with_launcher() -> None:
    """In a worker of ``bnnc finetune --nproc``: :func:`die_with_parent`, checked against the launcher."""
    if os.environ.get(LAUNCHER, "").isdigit() and launched_by_torchrun():
        die_with_parent(int(os.environ[LAUNCHER]))


def join(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun set up; the device becomes this rank's GPU on CUDA."""
    if not launched_by_torchrun():
        return SINGLE, device
    try:
        world = World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    except (KeyError, ValueError):
        raise BnncError("WORLD_SIZE is set but RANK is missing or malformed",
                        "launch with torchrun, or bnnc finetune --nproc N") from None
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise BnncError(f"local rank {world.local_rank} has no GPU ({torch.cuda.device_count()} visible)",
                            "use --nproc_per_node up to the number of GPUs, or --device cpu")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, device


def leave(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """The module to train: DDP around ``model`` when distributed (it shares ``model``'s parameters). Users'
    models may hold parameters a training step doesn't use (a layer defined but not called, an auxiliary head
    left out of the logits), which DDP refuses unless it looks for them on each step."""
    if not world.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def sampler(data: Dataset, world: World, seed: int) -> DistributedSampler | None:
    """Each rank's shard of a seeded shuffle (call ``set_epoch`` every epoch); None on one process."""
    if not world.distributed:
        return None
    return DistributedSampler(data, num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed)


def local_batch_size(batch_size: int, world: World) -> int:
    """This rank's share of the global batch."""
    if batch_size < world.size:
        raise BnncError(f"batch size {batch_size} is smaller than the {world.size} processes",
                        f"use --batch-size {world.size} or more")
    return batch_size // world.size


def total(values: list[float], world: World, device: torch.device) -> list[float]:
    """Sums of ``values`` over all ranks (the values themselves on one process)."""
    if not world.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(world: World) -> None:
    """Wait for every rank, e.g. until rank 0 has written the epoch's files."""
    if world.distributed:
        dist.barrier()
