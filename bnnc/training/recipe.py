"""The pieces of the fine-tuning recipe, each a small function: distillation, the optimizer and its
per-layer learning rates, the schedule, and how many binary weights flipped sign."""

from __future__ import annotations

import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bnnc.classes import class_logits
from bnnc.layers import binary_layers
from bnnc.shift import ShiftAdaMax
from bnnc.training.bop import AdamaxBop, AdamBop, ShiftAdaMaxBop
from bnnc.training.config import FinetuneConfig, Schedule


@torch.no_grad()
def teacher_logits(teacher: nn.Module, data: TensorDataset, device: torch.device) -> torch.Tensor:
    """The teacher's logits for every training sample, computed once (the data isn't augmented)."""
    teacher.eval()
    return torch.cat([teacher(x.to(device)) for x, _ in DataLoader(data, batch_size=1024)])


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` (Hinton et al., 2015), batch mean; one logit
    is read as two classes (:func:`bnnc.classes.class_logits`)."""
    t = temperature
    student, teacher = class_logits(student), class_logits(teacher)
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1),
                    reduction="batchmean", log_target=True) * t * t


def glorot_scale(layer: nn.Module) -> float:
    """The paper's per-layer learning-rate factor ``1 / sqrt(1.5 / (fan_in + fan_out))``."""
    w = cast(torch.Tensor, layer.weight)
    receptive = math.prod(w.shape[2:]) if w.dim() > 2 else 1
    fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
    return 1.0 / math.sqrt(1.5 / (fan_in + fan_out))


@torch.no_grad()
def equalize_latent(model: nn.Module) -> None:
    """Rescale each output channel's latent weights to their layer's mean |W|: ``W_c * mean|W| / mean|W_c|``.

    A latent weight's magnitude only says how far a step must push it to flip its sign; the model computes with
    the signs (and ``alpha``), which this leaves as they are. The FP32 weights' per-channel scale is arbitrary —
    a BatchNorm after the layer makes the function blind to it, so weight decay and training history set it —
    and with one learning rate a layer (:func:`latent_learning_rate`) it would decide which channels' weights
    flip easily. Equalized, the same push flips a weight in any channel; within a channel, the magnitudes keep
    saying which signs are surest. An all-zero channel stays zero."""
    for _, layer in binary_layers(model):
        w = layer.weight
        per_channel = w.abs().flatten(1).mean(1)
        scale = torch.where(per_channel > 0, w.abs().mean() / per_channel.clamp_min(torch.finfo(w.dtype).tiny),
                            torch.ones_like(per_channel))
        w.mul_(scale.view(-1, *([1] * (w.dim() - 1)))).clamp_(-1, 1)


def latent_learning_rate(weight: torch.Tensor, config: FinetuneConfig) -> float:
    """A binary layer's learning rate: ``latent_lr * mean |W|`` (the global one when that is 0, or the weights are).

    Adam's step is about its learning rate whatever the gradient's scale, so one global rate moves layers with
    small weights (an MLP's 0.02) several times further, relative to the weights, than layers with larger ones (a
    narrow conv's 0.05): the sample MLP fine-tuned best at 1e-3, the sample ResNet at three times that. A share
    of the mean |W| steps every layer the same relative distance."""
    if config.latent_lr > 0:
        scale = float(weight.detach().abs().mean())
        if scale > 0:
            return config.latent_lr * scale
    return config.learning_rate


def make_optimizer(model: nn.Module, config: FinetuneConfig) -> torch.optim.Optimizer:
    """Latent binary weights in their own groups (:func:`latent_learning_rate`, Glorot-scaled if asked), everything
    else in one at the global learning rate. The rates are fixed when fine-tuning starts (a resumed run restores
    them with the optimizer's state). With ``bop`` the binary weights form one Bop group instead (its ``lr`` is
    gamma, so the schedule scales it; :mod:`bnnc.training.bop`) and the optimizer steps only the rest."""
    lr = config.learning_rate
    binary = [layer for _, layer in binary_layers(model)]
    groups: list[dict[str, Any]]
    if config.bop:
        groups = [{"params": [layer.weight for layer in binary], "lr": config.bop_gamma, "bop": True,
                   "threshold": config.bop_threshold}] if binary else []
    else:
        glorot = [glorot_scale(layer) if config.glorot_lr else 1.0 for layer in binary]
        groups = [{"params": [layer.weight], "lr": latent_learning_rate(layer.weight, config) * g}
                  for layer, g in zip(binary, glorot, strict=True)]
    latent = {id(layer.weight) for layer in binary}
    rest = [p for p in model.parameters() if id(p) not in latent and p.requires_grad]
    groups.append({"params": rest, "lr": lr})
    decay = config.weight_decay
    if config.optimizer == "adam":
        return (AdamBop if config.bop else torch.optim.Adam)(groups, lr=lr, weight_decay=decay)
    if config.optimizer == "adamax":
        return (AdamaxBop if config.bop else torch.optim.Adamax)(groups, lr=lr, weight_decay=decay)
    return (ShiftAdaMaxBop if config.bop else ShiftAdaMax)(groups, lr=lr, weight_decay=decay)


def lr_factor(schedule: Schedule, step: int, total: int, warmup: float = 0.0) -> float:
    """Learning-rate multiplier at optimizer step ``step`` of ``total``: the schedule, times a linear warm-up
    from ``1 / warmup_steps`` to 1 over the first ``warmup`` share of the steps."""
    progress = min(step / max(total, 1), 1.0)
    ramp = min(1.0, (step + 1) / (warmup * total)) if warmup > 0 and total > 0 else 1.0
    if schedule == "cosine":
        return ramp * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":
        return ramp * (1 - progress)
    if schedule == "step":
        return ramp * 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
    return ramp


def weight_signs(model: nn.Module) -> list[torch.Tensor]:
    return [layer.weight.detach() >= 0 for _, layer in binary_layers(model)]


def flip_share(before: list[torch.Tensor], after: list[torch.Tensor]) -> float:
    total = sum(b.numel() for b in before)
    flipped = sum(int((b != a).sum()) for b, a in zip(before, after, strict=True))
    return flipped / total if total else 0.0
