"""How to fine-tune: :class:`FinetuneConfig`, every switch of the recipe with its measured default."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from bnnc import defaults
from bnnc.errors import BnncError

Optimizer = Literal["adam", "adamax", "shift-adamax"]
Schedule = Literal["cosine", "linear", "step", "constant"]
Ste = Literal["hardtanh", "approxsign", "ede"]
DEFAULT_LR: dict[str, float] = {"adam": 2e-3, "adamax": 2e-3, "shift-adamax": 2e-3}
"""The rate of every parameter but the latent weights (BatchNorm, alpha, thresholds, kept layers). Adam's was
1e-3 before 2026-12-02; 2e-3 cut the sample ResNet's drop by 0.6-0.8 pt, the MLP and VGG within their spread
(README, "bnnc finetune")."""


def _one_of(choices: tuple[str, ...]) -> str:
    """``"a, b or c"``: the choices a message names, from the type that defines them."""
    return f"{', '.join(choices[:-1])} or {choices[-1]}"


@dataclass(frozen=True)
class FinetuneConfig:
    """How to fine-tune. Defaults chosen by measurement on the sample models (see the README)."""

    epochs: int = defaults.FINETUNE_EPOCHS
    batch_size: int = defaults.BATCH_SIZE
    lr: float | None = None                   # None: DEFAULT_LR of the optimizer
    optimizer: Optimizer = "adam"
    schedule: Schedule = "cosine"
    weight_decay: float = defaults.WEIGHT_DECAY
    distill: bool = True
    temperature: float = defaults.TEMPERATURE
    distill_weight: float = defaults.DISTILL_WEIGHT  # loss = (1 - w) * CE + w * T^2 * KL(teacher || student)
    glorot_lr: bool = False                   # the paper's per-layer learning-rate scaling
    shift_bn: bool = False                    # the paper's shift-based BatchNorm
    stochastic: bool = False                  # stochastic activation binarization at train time
    recalibrate: bool = True                  # BN statistics + thresholds before training
    ste: Ste = defaults.STE                   # activations' gradient: paper's box, Bi-Real's ApproxSign, IR-Net's EDE
    two_step: bool = defaults.TWO_STEP        # ReActNet: real weights (binary activations) for the first half
    bn_reestimate: bool = defaults.BN_REESTIMATE  # BN statistics re-estimated before each validation (Bi-Real)
    warmup: float = defaults.WARMUP           # share of the steps with a linear learning-rate warm-up
    latent_lr: float = defaults.LATENT_LR     # latent weights' lr as a share of their layer's mean |W| (0: lr)
    equalize_latent: bool = defaults.EQUALIZE_LATENT  # each channel's latent weights at their layer's mean |W|
    bop: bool = defaults.BOP                  # Bop's flips for the binary weights instead of latent weights
    bop_gamma: float = defaults.BOP_GAMMA     # Bop: rate of the gradient averages (the schedule scales it)
    bop_threshold: float = defaults.BOP_THRESHOLD  # Bop: flip where sign(w) * m / sqrt(v) exceeds it
    calibration_batches: int = 20
    seed: int = defaults.SEED
    device: str = "auto"
    workers: int = defaults.WORKERS
    amp: bool = True                          # bfloat16 autocast of the FP32 parts, on GPUs that have it

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.lr is None or (math.isfinite(self.lr) and self.lr > 0), f"learning rate must be > 0, got {self.lr}"),
            (self.optimizer in DEFAULT_LR, f"optimizer must be {_one_of(tuple(DEFAULT_LR))}, got {self.optimizer!r}"),
            (self.schedule in get_args(Schedule), f"schedule must be {_one_of(get_args(Schedule))}, "
                                                  f"got {self.schedule!r}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.temperature > 0, f"temperature must be > 0, got {self.temperature}"),
            (0 <= self.distill_weight <= 1, f"distill weight must be in [0, 1], got {self.distill_weight}"),
            (self.calibration_batches >= 1, f"calibration batches must be >= 1, got {self.calibration_batches}"),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
            (self.ste in get_args(Ste), f"ste must be {_one_of(get_args(Ste))}, got {self.ste!r}"),
            (0 <= self.warmup < 1, f"warm-up must be a share of the steps in [0, 1), got {self.warmup}"),
            (math.isfinite(self.latent_lr) and self.latent_lr >= 0,
             f"latent learning rate must be a share >= 0 of the weights' mean |W|, got {self.latent_lr}"),
            (0 < self.bop_gamma <= 1, f"Bop's gamma must be in (0, 1], got {self.bop_gamma}"),
            (0 < self.bop_threshold < 1, f"Bop's threshold must be in (0, 1), got {self.bop_threshold}"),
            (not (self.bop and self.two_step), "Bop trains binary weights and the two-step schedule's first half "
                                               "real ones: choose one of --bop and --two-step"),
            (not (self.bop and self.glorot_lr), "Bop has no latent weights for --glorot-lr to scale: choose one of "
                                                "--bop and --glorot-lr"),
        ]
        for ok, message in checks:
            if not ok:
                raise BnncError(message)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    @property
    def real_weight_epochs(self) -> int:
        """Epochs of the two-step schedule's first step (binary activations, real weights): half, rounded down."""
        return self.epochs // 2 if self.two_step else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
