"""Fine-tuning a binarized checkpoint (``bnnc finetune``): the loop (:mod:`~bnnc.training.loop`), its
settings (:mod:`~bnnc.training.config`), the recipe's pieces (:mod:`~bnnc.training.recipe`, Bop in
:mod:`~bnnc.training.bop`), what it reports (:mod:`~bnnc.training.events`) and the files it writes
(:mod:`~bnnc.training.files`)."""

from bnnc.training.config import DEFAULT_LR, FinetuneConfig, Optimizer, Schedule
from bnnc.training.events import BatchEnd, Calibrating, EpochEnd, EpochRecord, Event, FinetuneResult, Started
from bnnc.training.files import FINETUNED_SUFFIX, default_output, history_path_for, state_path
from bnnc.training.loop import Prepared, finetune, prepare
from bnnc.training.recipe import (
    distillation_loss,
    equalize_latent,
    flip_share,
    glorot_scale,
    lr_factor,
    make_optimizer,
)

__all__ = [
    "DEFAULT_LR", "FINETUNED_SUFFIX", "BatchEnd", "Calibrating", "EpochEnd", "EpochRecord", "Event", "FinetuneConfig",
    "FinetuneResult", "Optimizer", "Prepared", "Schedule", "Started", "default_output", "distillation_loss",
    "equalize_latent", "finetune", "flip_share", "glorot_scale", "history_path_for", "lr_factor", "make_optimizer",
    "prepare", "state_path",
]
