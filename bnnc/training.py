"""finetune(checkpoint, data, config) -> FinetuneResult: win back the accuracy binarizing lost.

The recipe (each part switchable in :class:`FinetuneConfig`): re-estimate BatchNorm statistics
and calibrate input thresholds on training batches; train with the straight-through estimator
on cross-entropy plus distillation from the FP32 source model; clip latent weights to [-1, 1]
after every step. Progress goes to ``on_event``; this module never prints.

Reproducibility: epoch ``e`` shuffles with seed ``seed * 1000 + e`` and reseeds torch's global
generator (stochastic binarization, dropout) with ``seed + e``, so a run resumed at an epoch
boundary is bit-for-bit the run that was never interrupted (on the CPU).

Under ``torchrun`` (see :mod:`bnnc.distributed`) every process runs :func:`finetune` on its shard
of the data with DistributedDataParallel; rank 0 alone sends events and writes files.
"""

from __future__ import annotations

import json
import contextlib
import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bnnc import distributed
from bnnc.calibrate import calibrate_thresholds
from bnnc.conversion import ConvertOptions
from bnnc.data import DataSpec, DataSplits
from bnnc.device import resolve_device
from bnnc.distributed import World
from bnnc.errors import BnncError, DataError, OutputError
from bnnc.io import ModelFile, atomic_write, check_outputs, load_checkpoint, output_lock, save_checkpoint
from bnnc.layers import InputBinarizer, binary_layers, clip_latent_weights
from bnnc.resolve import calibration_loader, data_for_model, load_fp32_source, require_binarized
from bnnc.shift import ShiftAdaMax, use_shift_batchnorm

Optimizer = Literal["adam", "adamax", "shift-adamax"]
Schedule = Literal["cosine", "step", "constant"]
DEFAULT_LR: dict[str, float] = {"adam": 1e-3, "adamax": 2e-3, "shift-adamax": 2e-3}


@dataclass(frozen=True)
class FinetuneConfig:
    """How to fine-tune. Defaults chosen by measurement on the sample models (see the README)."""

    epochs: int = 5
    batch_size: int = 128
    lr: float | None = None                   # None: DEFAULT_LR of the optimizer
    optimizer: Optimizer = "adam"
    schedule: Schedule = "cosine"
    weight_decay: float = 0.0
    distill: bool = True
    temperature: float = 4.0
    distill_weight: float = 0.5               # loss = (1 - w) * CE + w * T^2 * KL(teacher || student)
    glorot_lr: bool = False                   # the paper's per-layer learning-rate scaling
    shift_bn: bool = False                    # the paper's shift-based BatchNorm
    stochastic: bool = False                  # stochastic activation binarization at train time
    recalibrate: bool = True                  # BN statistics + thresholds before training
    calibration_batches: int = 20
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    amp: bool = True                          # bfloat16 autocast of the FP32 parts, on GPUs that have it

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.lr is None or (math.isfinite(self.lr) and self.lr > 0), f"learning rate must be > 0, got {self.lr}"),
            (self.optimizer in DEFAULT_LR, f"optimizer must be adam, adamax or shift-adamax, got {self.optimizer!r}"),
            (self.schedule in ("cosine", "step", "constant"), f"schedule must be cosine, step or constant, "
                                                               f"got {self.schedule!r}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.temperature > 0, f"temperature must be > 0, got {self.temperature}"),
            (0 <= self.distill_weight <= 1, f"distill weight must be in [0, 1], got {self.distill_weight}"),
            (self.calibration_batches >= 1, f"calibration batches must be >= 1, got {self.calibration_batches}"),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
        ]
        for ok, message in checks:
            if not ok:
                raise BnncError(message)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
class Calibrating:
    """Progress of a calibration: ``done`` of ``total`` batches; ``batchnorm`` when BatchNorm
    statistics are re-estimated too (the recalibration before training)."""

    done: int
    total: int
    batchnorm: bool = True


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


Event = Calibrating | Started | BatchEnd | EpochEnd


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


@dataclass
class _State:
    """What a resume needs, saved after every epoch (loads with weights_only=True)."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_accuracy: float = -1.0
    best_epoch: int = 0
    baselines: dict[str, Any] = field(default_factory=dict)


def default_output(model_path: Path) -> Path:
    """``mlp.bnnc`` -> ``mlp.finetuned.bnnc``."""
    return model_path.with_name(f"{model_path.stem}.finetuned.bnnc")


def state_path(output: Path) -> Path:
    return output.with_name(output.name + ".state")


def history_path_for(output: Path) -> Path:
    return output.with_name(f"{output.stem}.history.json")


# ----------------------------------------------------------------------------- pieces


def load_teacher(loaded: ModelFile, teacher: str | os.PathLike[str] | None, trust_model: bool, *,
                 arch: str | None = None, arch_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """The FP32 model the checkpoint was converted from (or ``teacher``), rebuilt as convert did."""
    return load_fp32_source(loaded, teacher, arch=arch, arch_kwargs=arch_kwargs, trust_model=trust_model,
                            role="the distillation teacher", flag="--teacher", alternative=", or --no-distill").model


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorDataset, device: torch.device, batch_size: int = 1024
             ) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) in eval mode."""
    model.eval()
    correct, loss, n = 0, 0.0, 0
    for x, y in DataLoader(data, batch_size=batch_size):
        x, y = x.to(device), y.to(device)
        logits = model(x)
        correct += int((logits.argmax(1) == y).sum())
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        n += len(y)
    return correct / n, loss / n


@torch.no_grad()
def teacher_logits(teacher: nn.Module, data: TensorDataset, device: torch.device) -> torch.Tensor:
    """The teacher's logits for every training sample, computed once (the data isn't augmented)."""
    teacher.eval()
    return torch.cat([teacher(x.to(device)) for x, _ in DataLoader(data, batch_size=1024)])


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` (Hinton et al., 2015), batch mean."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1),
                    reduction="batchmean", log_target=True) * t * t


def glorot_scale(layer: nn.Module) -> float:
    """The paper's per-layer learning-rate factor ``1 / sqrt(1.5 / (fan_in + fan_out))``."""
    w = layer.weight
    receptive = math.prod(w.shape[2:]) if w.dim() > 2 else 1
    fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
    return 1.0 / math.sqrt(1.5 / (fan_in + fan_out))


def make_optimizer(model: nn.Module, config: FinetuneConfig) -> torch.optim.Optimizer:
    """Latent binary weights in their own groups (Glorot-scaled if asked), everything else in one."""
    lr = config.learning_rate
    groups: list[dict[str, Any]] = []
    latent: set[int] = set()
    for _, layer in binary_layers(model):
        latent.add(id(layer.weight))
        groups.append({"params": [layer.weight], "lr": lr * (glorot_scale(layer) if config.glorot_lr else 1.0)})
    rest = [p for p in model.parameters() if id(p) not in latent and p.requires_grad]
    groups.append({"params": rest, "lr": lr})
    kwargs = {"weight_decay": config.weight_decay}
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, **kwargs)
    if config.optimizer == "adamax":
        return torch.optim.Adamax(groups, lr=lr, **kwargs)
    return ShiftAdaMax(groups, lr=lr, **kwargs)


def lr_factor(schedule: Schedule, step: int, total: int) -> float:
    """Learning-rate multiplier at optimizer step ``step`` of ``total``."""
    progress = min(step / max(total, 1), 1.0)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "step":
        return 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
    return 1.0


def _weight_signs(model: nn.Module) -> list[torch.Tensor]:
    return [layer.weight.detach() >= 0 for _, layer in binary_layers(model)]


def flip_share(before: list[torch.Tensor], after: list[torch.Tensor]) -> float:
    total = sum(b.numel() for b in before)
    flipped = sum(int((b != a).sum()) for b, a in zip(before, after, strict=True))
    return flipped / total if total else 0.0


class _Indexed(torch.utils.data.Dataset):
    """(x, y, i): the index finds the sample's precomputed teacher logits."""

    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        x, y = self.data[i]
        return x, y, i


# ----------------------------------------------------------------------------- the loop


def finetune(
    model_path: str | os.PathLike[str],
    data: DataSpec,
    config: FinetuneConfig | None = None,
    output: str | os.PathLike[str] | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    teacher: str | os.PathLike[str] | None = None,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    trust_model: bool = False,
    history_path: str | os.PathLike[str] | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> FinetuneResult:
    """Fine-tune the binarized checkpoint ``model_path`` on ``data``; write the best epoch to ``output``.

    ``output`` defaults to ``NAME.finetuned.bnnc`` beside the input; the history (JSON, one
    record per epoch) to ``NAME.finetuned.history.json``; the resume state to ``OUTPUT.state``.
    With ``resume`` the run continues after the last epoch in that state. The teacher is the FP32
    source the checkpoint was converted from, rebuilt with its recorded architecture, or
    ``teacher`` (a state dict there takes ``arch``/``arch_kwargs``, else the recorded architecture).
    """
    config = config or FinetuneConfig()
    run = prepare(model_path, data, output, resume=resume, overwrite=overwrite, trust_model=trust_model,
                  history_path=history_path, distill=config.distill, teacher=teacher, arch=arch,
                  arch_kwargs=arch_kwargs)
    world, device = distributed.join(resolve_device(config.device))
    try:
        with output_lock(run.output) if world.is_main else contextlib.nullcontext():
            if world.is_main and not resume and not overwrite and run.output.exists():  # written meanwhile
                raise OutputError(f"{run.output} already exists", "pass --force to overwrite it, or choose another -o")
            return _finetune(run, config, resume, device, world,
                             on_event if world.is_main and on_event else (lambda event: None))
    finally:
        distributed.leave(world)


@dataclass(frozen=True)
class Prepared:
    """A fine-tuning run's checked inputs and outputs."""

    loaded: ModelFile
    splits: DataSplits
    output: Path
    history: Path
    state: Path
    teacher: nn.Module | None        # the distillation teacher, when distilling


def prepare(
    model_path: str | os.PathLike[str],
    data: DataSpec,
    output: str | os.PathLike[str] | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    trust_model: bool = False,
    history_path: str | os.PathLike[str] | None = None,
    distill: bool = True,
    teacher: str | os.PathLike[str] | None = None,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
) -> Prepared:
    """Check the outputs and load the model, the data and (``distill``) the teacher: every bad-input
    error :func:`finetune` can raise before training, raised here (``bnnc finetune --nproc`` calls it
    before launching)."""
    src = Path(model_path)
    out = Path(output) if output is not None else default_output(src)
    hist = Path(history_path) if history_path is not None else history_path_for(out)
    state_file = state_path(out)
    inputs = (src, data, teacher)
    if not resume:
        check_outputs((output if output is not None else out, history_path if history_path is not None else hist,
                       state_file), inputs, overwrite=overwrite)
    elif not state_file.is_file():
        raise BnncError(f"nothing to resume: {state_file} does not exist", "run without --resume first")
    else:
        check_outputs((out, hist, state_file), inputs, overwrite=True)
    loaded = require_binarized(load_checkpoint(src, trust_model=trust_model, allow_arch=arch))
    splits = data_for_model(data, loaded)
    if len(splits.train) < 2:
        raise DataError(f"{splits.source}: fine-tuning needs at least 2 training samples",
                        "give more training data")
    teacher_model = load_teacher(loaded, teacher, trust_model, arch=arch, arch_kwargs=arch_kwargs) if distill else None
    return Prepared(loaded, splits, out, hist, state_file, teacher_model)


def _finetune(run: Prepared, config: FinetuneConfig, resume: bool, device: torch.device, world: World,
              emit: Callable[[Event], None]) -> FinetuneResult:
    """The run itself, on every rank; only rank 0 (``world.is_main``) writes files."""
    torch.manual_seed(config.seed)
    loaded, splits = run.loaded, run.splits

    model = loaded.model
    if distributed.local_batch_size(config.batch_size, world) < 2 and any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise BnncError(f"batches of one sample{' per process' if world.distributed else ''}: the model's "
                        "BatchNorm layers can't train on them", "use --batch-size 2 or more")
    options = ConvertOptions.from_dict(loaded.binarized["options"])  # type: ignore[index]
    if config.shift_bn and not options.shift_bn:
        use_shift_batchnorm(model)
    if config.stochastic:
        for m in model.modules():
            if isinstance(m, InputBinarizer):
                m.stochastic = True
    options = replace(options, shift_bn=options.shift_bn or config.shift_bn,
                      stochastic=options.stochastic or config.stochastic)
    model.to(device)

    teacher_model = run.teacher.to(device) if run.teacher is not None else None
    state, saved = _State(), None
    digest = _inputs_digest(splits, run.teacher)
    if resume:
        state, saved = _load_state(run.state, loaded.sha256, config, model, digest)
    else:
        fp32_acc = evaluate(teacher_model, splits.val, device)[0] if teacher_model is not None else (
            loaded.metrics.get("fp32_accuracy") or loaded.metrics.get("test_accuracy"))
        converted_acc = evaluate(model, splits.val, device)[0]
        recalibrated_acc = None
        if config.recalibrate:
            calibrate_thresholds(model, calibration_loader(splits.train, config.seed), config.calibration_batches,
                                 batchnorm=True, on_batch=lambda done, total: emit(Calibrating(done, total)))
            recalibrated_acc = evaluate(model, splits.val, device)[0]
        state.baselines = {"fp32_accuracy": fp32_acc, "converted_accuracy": converted_acc,
                           "recalibrated_accuracy": recalibrated_acc}
    batch_size = distributed.local_batch_size(config.batch_size, world)
    local = math.ceil(len(splits.train) / world.size)  # samples per process and epoch
    drop = local > 1 and local % batch_size == 1       # a BatchNorm can't train on a batch of one sample
    where = f"{device} × {world.size} processes" if world.distributed else str(device)
    emit(Started(device=where, train_samples=len(splits.train), val_samples=len(splits.val),
                 start_epoch=state.epoch + 1, dropped_samples=int(drop) * world.size, **state.baselines))

    targets = teacher_logits(teacher_model, splits.train, device) if teacher_model is not None else None
    trainer = distributed.wrap(model, world, device)  # DDP syncs rank 0's weights and buffers to every rank
    optimizer = make_optimizer(model, config)
    steps_per_epoch = local // batch_size if drop else math.ceil(local / batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(config.schedule, step, total_steps))
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])

    started = time.perf_counter()
    for epoch in range(state.epoch + 1, config.epochs + 1):
        record = _train_epoch(trainer, model, splits, targets, optimizer, scheduler, config, epoch, batch_size,
                              drop, device, world, emit)
        state.history.append(asdict(record))
        is_best = record.val_accuracy > state.best_accuracy
        if is_best:
            state.best_accuracy, state.best_epoch = record.val_accuracy, epoch
        state.epoch = epoch
        if world.is_main:
            if is_best:
                _save_model(run.output, loaded, model, options, config, state, splits.preprocessing.to_dict())
            _save_state(run.state, loaded.sha256, config, model, optimizer, scheduler, state, digest)
            atomic_write(run.history, lambda f: f.write(json.dumps(_history_doc(state, config), indent=2).encode()),
                         overwrite=True)
        distributed.barrier(world)  # every rank's epoch ends when its files are on disk
        emit(EpochEnd(record=record, best=is_best))

    return FinetuneResult(
        output=run.output, history_path=run.history, history=[EpochRecord(**h) for h in state.history],
        fp32_accuracy=state.baselines.get("fp32_accuracy"),
        converted_accuracy=state.baselines["converted_accuracy"],
        recalibrated_accuracy=state.baselines.get("recalibrated_accuracy"),
        best_accuracy=state.best_accuracy, best_epoch=state.best_epoch,
        seconds=time.perf_counter() - started,
    )


def _train_epoch(
    trainer: nn.Module, model: nn.Module, splits: DataSplits, targets: torch.Tensor | None,
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, config: FinetuneConfig,
    epoch: int, batch_size: int, drop_last: bool, device: torch.device, world: World, emit: Callable[[Event], None],
) -> EpochRecord:
    """One epoch of ``trainer`` (``model``, or DDP around it) on this rank's share of the data; with
    ``drop_last`` the last batch, of one sample, is left out."""
    torch.manual_seed(config.seed + epoch + 100_003 * world.rank)  # stochastic binarization differs per rank
    shard = distributed.sampler(splits.train, world, seed=config.seed)
    if shard is not None:
        shard.set_epoch(epoch)
    loader = DataLoader(
        _Indexed(splits.train), batch_size=batch_size, shuffle=shard is None, sampler=shard, drop_last=drop_last,
        num_workers=config.workers, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed * 1000 + epoch) if shard is None else None,
    )
    signs = _weight_signs(model)
    lr = optimizer.param_groups[-1]["lr"]
    trainer.train()
    t0 = time.perf_counter()
    loss_sum, correct, seen = 0.0, 0, 0
    amp = config.amp and device.type == "cuda" and torch.cuda.is_bf16_supported()
    for i, (x, y, idx) in enumerate(loader, 1):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):  # binary layers opt out
            logits = trainer(x).float()
        loss = F.cross_entropy(logits, y)
        if targets is not None:
            w = config.distill_weight
            loss = (1 - w) * loss + w * distillation_loss(logits, targets[idx.to(device)], config.temperature)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise BnncError(f"fine-tuning diverged in epoch {epoch}, batch {i}: the loss is {value}; the best "
                            "epoch so far, if any, stays in the output",
                            "lower --lr or --temperature, or check the data for huge values")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        clip_latent_weights(model)
        scheduler.step()
        loss_sum += value * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        emit(BatchEnd(epoch=epoch, batch=i, batches=len(loader), loss=loss_sum / seen, accuracy=correct / seen,
                      samples_per_s=seen / max(time.perf_counter() - t0, 1e-9)))
    seconds = time.perf_counter() - t0
    loss_sum, correct, seen = distributed.total([loss_sum, correct, seen], world, device)
    val_acc, val_loss = evaluate(model, splits.val, device)
    return EpochRecord(
        epoch=epoch, train_loss=loss_sum / seen, train_accuracy=correct / seen, val_loss=val_loss,
        val_accuracy=val_acc, lr=lr, flip_share=flip_share(signs, _weight_signs(model)), seconds=seconds,
        samples_per_s=seen / seconds, dropped_samples=int(drop_last) * world.size,
    )


def _history_doc(state: _State, config: FinetuneConfig) -> dict[str, Any]:
    return {"config": config.to_dict(), **state.baselines, "best_epoch": state.best_epoch,
            "best_val_accuracy": state.best_accuracy, "epochs": state.history}


def _save_model(out: Path, loaded: ModelFile, model: nn.Module, options: ConvertOptions,
                config: FinetuneConfig, state: _State, preprocessing: dict[str, Any]) -> None:
    """The best epoch's checkpoint; the data's preprocessing is recorded if the input had none."""
    binarized = dict(loaded.binarized or {})
    binarized["options"] = options.to_dict()
    binarized["finetune"] = {"config": config.to_dict(), "best_epoch": state.best_epoch,
                             "best_val_accuracy": state.best_accuracy, "from": str(loaded.path.resolve()),
                             "from_sha256": loaded.sha256}
    metrics = {**loaded.metrics, **{k: v for k, v in state.baselines.items() if v is not None},
               "val_accuracy": state.best_accuracy}
    save_checkpoint(out, state_dict=model.state_dict(), arch=loaded.arch, arch_kwargs=loaded.arch_kwargs,
                    preprocessing=loaded.preprocessing or preprocessing, metrics=metrics, binarized=binarized,
                    overwrite=True)


def _inputs_digest(splits: DataSplits, teacher: nn.Module | None) -> str:
    """SHA-256 of the training data (as normalised) and the teacher's weights: what ``--resume`` must see again."""
    h = hashlib.sha256()
    tensors = [*splits.train.tensors, *splits.val.tensors]
    if teacher is not None:
        for name, t in teacher.state_dict().items():
            h.update(name.encode())
            tensors.append(t)
    for t in tensors:
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _save_state(path: Path, source_sha: str, config: FinetuneConfig, model: nn.Module,
                optimizer: torch.optim.Optimizer, scheduler: Any, state: _State, inputs: str) -> None:
    payload = {
        "source_sha256": source_sha, "inputs_sha256": inputs, "config": config.to_dict(), "epoch": state.epoch,
        "history": state.history, "best_accuracy": state.best_accuracy, "best_epoch": state.best_epoch,
        "baselines": state.baselines, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }
    atomic_write(path, lambda f: torch.save(payload, f), overwrite=True)


def _load_state(path: Path, source_sha: str, config: FinetuneConfig, model: nn.Module, inputs: str
                ) -> tuple[_State, dict[str, Any]]:
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
    state = _State(epoch=int(raw["epoch"]), history=list(raw["history"]), best_accuracy=float(raw["best_accuracy"]),
                   best_epoch=int(raw["best_epoch"]), baselines=dict(raw["baselines"]))
    return state, raw
