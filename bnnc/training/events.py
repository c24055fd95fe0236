"""What a fine-tuning run reports while it runs (events to ``on_event``) and when it ends (its result)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bnnc.events import Calibrating, Warned


@dataclass(frozen=True)
class EpochRecord:
    """One line of the history file."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    flip_share: float          # share of binary weights whose sign changed this epoch
    seconds: float
    samples_per_s: float
    dropped_samples: int = 0   # a last batch of one sample per process, left out (BatchNorm can't train on it)


@dataclass(frozen=True)
class Started:
    """Sent once before training: the baselines."""

    fp32_accuracy: float | None
    converted_accuracy: float
    recalibrated_accuracy: float | None
    device: str
    train_samples: int
    val_samples: int
    start_epoch: int           # > 1 when resumed
    dropped_samples: int = 0   # left out of every epoch: a last batch of one sample per process


@dataclass(frozen=True)
class BatchEnd:
    epoch: int
    batch: int
    batches: int
    loss: float
    accuracy: float
    samples_per_s: float


@dataclass(frozen=True)
class EpochEnd:
    record: EpochRecord
    best: bool


Event = Calibrating | Warned | Started | BatchEnd | EpochEnd


@dataclass(frozen=True)
class FinetuneResult:
    output: Path
    history_path: Path
    history: list[EpochRecord]
    fp32_accuracy: float | None
    converted_accuracy: float
    recalibrated_accuracy: float | None
    best_accuracy: float
    best_epoch: int
    seconds: float
    warnings: tuple[str, ...] = ()   # a guessed input normalisation (the checkpoint recorded none)
