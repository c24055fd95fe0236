"""The files of a fine-tuning run besides the model: where they go by default, and the resume state
saved after every epoch (it loads with ``weights_only=True``) that ``--resume`` continues from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnnc.data import DataSplits
from bnnc.errors import BnncError, OutputError
from bnnc.outputs import atomic_write
from bnnc.training.config import FinetuneConfig


@dataclass
class RunState:
    """What a resume needs, saved after every epoch (loads with weights_only=True)."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_accuracy: float = -1.0
    best_epoch: int = 0
    baselines: dict[str, Any] = field(default_factory=dict)


FINETUNED_SUFFIX = ".finetuned.bnnc"


def default_output(model_path: Path) -> Path:
    """``mlp.bnnc`` -> ``mlp.finetuned.bnnc``."""
    return model_path.with_name(f"{model_path.stem}{FINETUNED_SUFFIX}")


def state_path(output: Path) -> Path:
    return output.with_name(output.name + ".state")


def history_path_for(output: Path) -> Path:
    return output.with_name(f"{output.stem}.history.json")


def inputs_digest(splits: DataSplits, teacher: nn.Module | None) -> str:
    """SHA-256 of the training data (as normalised) and the teacher's weights: what ``--resume`` must see again."""
    h = hashlib.sha256()
    tensors = [*splits.train.tensors, *splits.val.tensors]
    if teacher is not None:
        for name, t in teacher.state_dict().items():
            h.update(name.encode())
            tensors.append(t)
    for t in tensors:
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def save_state(path: Path, source_sha: str, config: FinetuneConfig, model: nn.Module,
                optimizer: torch.optim.Optimizer, scheduler: Any, state: RunState, inputs: str) -> None:
    payload = {
        "source_sha256": source_sha, "inputs_sha256": inputs, "config": config.to_dict(), "epoch": state.epoch,
        "history": state.history, "best_accuracy": state.best_accuracy, "best_epoch": state.best_epoch,
        "baselines": state.baselines, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }
    atomic_write(path, lambda f: torch.save(payload, f), overwrite=True)


def load_state(path: Path, source_sha: str, config: FinetuneConfig, model: nn.Module, inputs: str
                ) -> tuple[RunState, dict[str, Any]]:
    """The saved progress (weights loaded into ``model``) and the raw dict (optimizer, scheduler)."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt state file
        raise BnncError(f"{path} can't be read ({type(e).__name__})", "run again without --resume") from None
    expected = {"source_sha256", "config", "epoch", "history", "best_accuracy", "best_epoch", "baselines", "model",
                "optimizer", "scheduler"}
    if not isinstance(raw, dict) or not expected <= raw.keys() or not isinstance(raw["config"], dict):
        raise BnncError(f"{path} is not a bnnc resume state", "run again without --resume")
    if raw["source_sha256"] != source_sha:
        raise BnncError(f"{path} belongs to a run on another model", "run without --resume, or pass that model")
    if raw.get("inputs_sha256") != inputs:
        raise BnncError(f"{path} belongs to a run on other data or another teacher",
                        "pass the --data and --teacher of the interrupted run, or run without --resume")
    saved = {**FinetuneConfig().to_dict(), **raw["config"]}  # a key added since: its default
    now = config.to_dict()
    saved.pop("epochs", None), now.pop("epochs")
    if saved != now:
        changed = sorted(k for k in now if saved.get(k) != now[k])
        raise OutputError(f"--resume needs the settings of the interrupted run; these differ: {', '.join(changed)}",
                          "repeat the original options (only --epochs may change)")
    model.load_state_dict(raw["model"])
    state = RunState(epoch=int(raw["epoch"]), history=list(raw["history"]), best_accuracy=float(raw["best_accuracy"]),
                   best_epoch=int(raw["best_epoch"]), baselines=dict(raw["baselines"]))
    return state, raw
