"""finetune(checkpoint, data, config) -> FinetuneResult: win back the accuracy binarizing lost.

The recipe (each part switchable in :class:`FinetuneConfig`): re-estimate BatchNorm statistics
and calibrate input thresholds on training batches; train with the straight-through estimator
on cross-entropy plus distillation from the FP32 source model; clip latent weights to [-1, 1]
after every step. Optional: ApproxSign's gradient, the two-step schedule (real weights first),
BatchNorm re-estimation before each validation, a learning-rate warm-up. Progress goes to
``on_event``; this module never prints.

Reproducibility: epoch ``e`` shuffles with seed ``seed * 1000 + e`` and reseeds torch's global
generator (stochastic binarization, dropout) with ``seed + e``, so a run resumed at an epoch
boundary is bit-for-bit the run that was never interrupted (on the CPU).

Under ``torchrun`` (see :mod:`bnnc.distributed`) every process runs :func:`finetune` on its shard
of the data with DistributedDataParallel; rank 0 alone sends events and writes files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bnnc import distributed
from bnnc.calibrate import calibrate_on, reestimate_batchnorm
from bnnc.checkpoint import FinetuneInfo, save_checkpoint
from bnnc.classes import class_logits, predictions
from bnnc.data import DataSpec, DataSplits, Normalisation
from bnnc.device import resolve_device
from bnnc.distributed import World
from bnnc.errors import BnncError, DataError, OutputError
from bnnc.evaluation import evaluate
from bnnc.events import Warned
from bnnc.layers import InputBinarizer, clip_latent_weights, use_real_weights
from bnnc.loading import ModelFile, load_checkpoint
from bnnc.outputs import check_outputs, output_lock, write_text
from bnnc.quantizers import ede_sharpness
from bnnc.resolve import data_for_model, guess_warning, load_teacher, require_binarized
from bnnc.shift import use_shift_batchnorm
from bnnc.swap import ConvertOptions
from bnnc.training.config import FinetuneConfig
from bnnc.training.events import BatchEnd, Calibrating, EpochEnd, EpochRecord, Event, FinetuneResult, Started
from bnnc.training.files import (
    RunState,
    default_output,
    history_path_for,
    inputs_digest,
    load_state,
    save_state,
    state_path,
)
from bnnc.training.recipe import (
    distillation_loss,
    equalize_latent,
    flip_share,
    lr_factor,
    make_optimizer,
    teacher_logits,
    weight_signs,
)


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
    normalisation: Normalisation | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> FinetuneResult:
    """Fine-tune the binarized checkpoint ``model_path`` on ``data``; write the best epoch to ``output``.

    ``output`` defaults to ``NAME.finetuned.bnnc`` beside the input; the history (JSON, one
    record per epoch) to ``NAME.finetuned.history.json``; the resume state to ``OUTPUT.state``.
    With ``resume`` the run continues after the last epoch in that state. The teacher is the FP32
    source the checkpoint was converted from, rebuilt with its recorded architecture, or
    ``teacher`` (a state dict there takes ``arch``/``arch_kwargs``, else the recorded architecture).
    ``normalisation`` states the mean/std for a checkpoint that records none (converted without data).
    """
    config = config or FinetuneConfig()
    run = prepare(model_path, data, output, resume=resume, overwrite=overwrite, trust_model=trust_model,
                  history_path=history_path, distill=config.distill, teacher=teacher, arch=arch,
                  arch_kwargs=arch_kwargs, normalisation=normalisation)
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
    normalisation: Normalisation | None = None,
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
    splits = data_for_model(data, loaded, normalisation=normalisation)
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
    options = loaded.binarized.options  # type: ignore[union-attr]
    if config.shift_bn and not options.shift_bn:
        use_shift_batchnorm(model)
    for m in model.modules():
        if isinstance(m, InputBinarizer):
            m.stochastic = m.stochastic or config.stochastic
            m.gradient = config.ste
    options = replace(options, shift_bn=options.shift_bn or config.shift_bn,
                      stochastic=options.stochastic or config.stochastic)
    model.to(device)

    teacher_model = run.teacher.to(device) if run.teacher is not None else None
    state, saved = RunState(), None
    start: dict[str, torch.Tensor] | None = None  # the weights fine-tuning starts from, until the first epoch ends
    digest = inputs_digest(splits, run.teacher)
    if resume:
        state, saved = load_state(run.state, loaded.sha256, config, model, digest)
    else:
        fp32_acc = evaluate(teacher_model, splits.val, device)[0] if teacher_model is not None else (
            loaded.metrics.get("fp32_accuracy") or loaded.metrics.get("test_accuracy"))
        converted_acc = evaluate(model, splits.val, device)[0]
        recalibrated_acc = None
        if config.recalibrate:
            converted = {k: v.clone() for k, v in model.state_dict().items()}
            calibrate_on(model, splits.train, config.calibration_batches, seed=config.seed, batchnorm=True,
                         on_batch=lambda done, total: emit(Calibrating(done, total)))
            recalibrated_acc = evaluate(model, splits.val, device)[0]
            if recalibrated_acc < converted_acc:  # the binary activations' statistics hurt here: keep the converted
                model.load_state_dict(converted)
        state.baselines = {"fp32_accuracy": fp32_acc, "converted_accuracy": converted_acc,
                           "recalibrated_accuracy": recalibrated_acc}
        # the start competes with the epochs as epoch 0: it stays the output until an epoch beats it
        state.best_accuracy = max(converted_acc, recalibrated_acc or 0.0)
        start = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if config.equalize_latent and not config.bop:  # the signs, so the model, stay (Bop uses no magnitudes)
            equalize_latent(model)
    guessed = (guess_warning(splits),) if splits.guessed else ()
    for text in guessed:
        emit(Warned(text))
    batch_size = distributed.local_batch_size(config.batch_size, world)
    local = math.ceil(len(splits.train) / world.size)  # samples per process and epoch
    drop = local > 1 and local % batch_size == 1       # a BatchNorm can't train on a batch of one sample
    where = f"{device} × {world.size} processes" if world.distributed else str(device)
    emit(Started(device=where, train_samples=len(splits.train), val_samples=len(splits.val),
                 start_epoch=state.epoch + 1, dropped_samples=int(drop) * world.size, **state.baselines))

    targets = teacher_logits(teacher_model, splits.train, device) if teacher_model is not None else None
    trainer = distributed.wrap(_Logits(model), world, device)  # DDP syncs rank 0's weights and buffers to every rank
    optimizer = make_optimizer(model, config)
    steps_per_epoch = local // batch_size if drop else math.ceil(local / batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(config.schedule, step, total_steps, config.warmup))
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])

    started = time.perf_counter()
    for epoch in range(state.epoch + 1, config.epochs + 1):
        real_weights = epoch <= config.real_weight_epochs
        use_real_weights(model, real_weights)
        if config.two_step and epoch == config.real_weight_epochs + 1:  # weights binary from here: BN adapts
            calibrate_on(model, splits.train, config.calibration_batches, seed=config.seed + epoch, batchnorm=True,
                         on_batch=lambda done, total: emit(Calibrating(done, total)))
        record = _train_epoch(trainer, model, splits, targets, optimizer, scheduler, config, epoch, batch_size,
                              drop, device, world, emit)
        state.history.append(asdict(record))
        is_best = not real_weights and record.val_accuracy > state.best_accuracy  # a real-weight epoch can't ship
        if is_best:
            state.best_accuracy, state.best_epoch = record.val_accuracy, epoch
        state.epoch = epoch
        if world.is_main:
            if is_best or start is not None:  # the first epoch's end writes the output: it, or the start
                weights = start if start is not None and not is_best else model.state_dict()
                _save_model(run.output, loaded, weights, options, config, state, splits)
            save_state(run.state, loaded.sha256, config, model, optimizer, scheduler, state, digest)
            write_text(run.history, json.dumps(_history_doc(state, config), indent=2), overwrite=True)
        start = None
        distributed.barrier(world)  # every rank's epoch ends when its files are on disk
        emit(EpochEnd(record=record, best=is_best))

    return FinetuneResult(
        output=run.output, history_path=run.history, history=[EpochRecord(**h) for h in state.history],
        fp32_accuracy=state.baselines.get("fp32_accuracy"),
        converted_accuracy=state.baselines["converted_accuracy"],
        recalibrated_accuracy=state.baselines.get("recalibrated_accuracy"),
        best_accuracy=state.best_accuracy, best_epoch=state.best_epoch,
        seconds=time.perf_counter() - started,
        warnings=guessed,
    )


class _Logits(nn.Module):
    """``model`` whose forward gives the logits alone in training mode too. GoogLeNet and Inception-v3 return
    ``(logits, aux_logits...)`` while training (the logits alone in eval): their auxiliary heads only help train
    from scratch, and fine-tuning trains the logits the export computes. The heads left out are parameters
    with no gradient, which DDP allows (``distributed.wrap``) once they aren't among the outputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor) else out


def _train_epoch(
    trainer: nn.Module, model: nn.Module, splits: DataSplits, targets: torch.Tensor | None,
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, config: FinetuneConfig,
    epoch: int, batch_size: int, drop_last: bool, device: torch.device, world: World, emit: Callable[[Event], None],
) -> EpochRecord:
    """One epoch of ``trainer`` (``model`` giving its logits alone, or DDP around that) on this rank's share of
    the data; with ``drop_last`` the last batch, of one sample, is left out."""
    torch.manual_seed(config.seed + epoch + 100_003 * world.rank)  # stochastic binarization differs per rank
    shard = distributed.sampler(splits.train, world, seed=config.seed)
    if shard is not None:
        shard.set_epoch(epoch)
    loader = DataLoader(
        _Indexed(splits.train), batch_size=batch_size, shuffle=shard is None, sampler=shard, drop_last=drop_last,
        num_workers=config.workers, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed * 1000 + epoch) if shard is None else None,
    )
    signs = weight_signs(model)
    lr = optimizer.param_groups[-1]["lr"]
    trainer.train()
    t0 = time.perf_counter()
    loss_sum, correct, seen = 0.0, 0, 0
    amp = config.amp and device.type == "cuda" and torch.cuda.is_bf16_supported()
    binarizers = [m for m in model.modules() if isinstance(m, InputBinarizer)] if config.ste == "ede" else []
    for i, (x, y, idx) in enumerate(loader, 1):
        if binarizers:  # the error decay estimator sharpens over the whole run's steps, resumed runs included
            t = ede_sharpness(((epoch - 1) * len(loader) + i - 1) / (config.epochs * len(loader)))
            for m in binarizers:
                m.sharpness = t
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):  # binary layers opt out
            logits = trainer(x).float()
        loss = F.cross_entropy(class_logits(logits), y)
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
        correct += int((predictions(logits) == y).sum())
        seen += len(y)
        emit(BatchEnd(epoch=epoch, batch=i, batches=len(loader), loss=loss_sum / seen, accuracy=correct / seen,
                      samples_per_s=seen / max(time.perf_counter() - t0, 1e-9)))
    seconds = time.perf_counter() - t0
    loss_sum, total_correct, total_seen = distributed.total([loss_sum, correct, seen], world, device)
    if config.bn_reestimate:
        reestimate_batchnorm(model, splits.train, config.calibration_batches, seed=config.seed + epoch)
    val_acc, val_loss = evaluate(model, splits.val, device)
    return EpochRecord(
        epoch=epoch, train_loss=loss_sum / total_seen, train_accuracy=total_correct / total_seen, val_loss=val_loss,
        val_accuracy=val_acc, lr=lr, flip_share=flip_share(signs, weight_signs(model)), seconds=seconds,
        samples_per_s=total_seen / seconds, dropped_samples=int(drop_last) * world.size,
    )


def _history_doc(state: RunState, config: FinetuneConfig) -> dict[str, Any]:
    return {"config": config.to_dict(), **state.baselines, "best_epoch": state.best_epoch,
            "best_val_accuracy": state.best_accuracy, "epochs": state.history}


def _save_model(out: Path, loaded: ModelFile, weights: dict[str, torch.Tensor], options: ConvertOptions,
                config: FinetuneConfig, state: RunState, splits: DataSplits) -> None:
    """The best epoch's checkpoint (epoch 0: the start); the data's preprocessing is recorded if the input had
    none, and the data's path, for the steps after."""
    binarized = replace(loaded.binarized, options=options, finetune=FinetuneInfo(  # type: ignore[type-var]
        config=config.to_dict(), best_epoch=state.best_epoch, best_val_accuracy=state.best_accuracy,
        source=str(loaded.path.resolve()), source_sha256=loaded.sha256, data_path=splits.path))
    metrics = {**loaded.metrics, **{k: v for k, v in state.baselines.items() if v is not None},
               "val_accuracy": state.best_accuracy}
    save_checkpoint(out, state_dict=weights, arch=loaded.arch, arch_kwargs=loaded.arch_kwargs,
                    preprocessing=loaded.preprocessing or splits.preprocessing.to_dict(), metrics=metrics,
                    binarized=binarized, overwrite=True)
