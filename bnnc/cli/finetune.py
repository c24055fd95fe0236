"""``bnnc finetune``: train a binarized checkpoint with the STE; progress on stderr, summary on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bnnc.cli import options as opt
from bnnc.cli.choices import BatchNormChoice, BinarizeChoice, OptimizerChoice, ScheduleChoice
from bnnc.cli.convert import parse_kwargs
from bnnc.cli.errors import reported_errors

if TYPE_CHECKING:
    from bnnc.training import Event, FinetuneConfig, FinetuneResult


def finetune_command(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Binarized checkpoint written by `bnnc convert`.")],
    data: Annotated[str, typer.Option(help="Training data: IDX folder, .npz, .pt, image folder, or "
                                           "pkg.module:function.")],
    epochs: Annotated[int, typer.Option(help="Epochs to train.", min=1, max=100_000)] = 5,
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="Best checkpoint "
                                                   "(default: MODEL.finetuned.bnnc).")] = None,
    lr: opt.LearningRate = None,
    optimizer: opt.Optimizer = OptimizerChoice.adam,
    schedule: opt.Schedule = ScheduleChoice.cosine,
    weight_decay: opt.WeightDecay = 0.0,
    distill: opt.Distill = True,
    temperature: opt.Temperature = 4.0,
    distill_weight: opt.DistillWeight = 0.5,
    teacher: opt.Teacher = None,
    arch: opt.Arch = None,
    arch_kwargs: opt.ArchKwargs = None,
    glorot_lr: opt.GlorotLr = False,
    bn: opt.BatchNorm = BatchNormChoice.standard,
    binarize: opt.Binarize = BinarizeChoice.deterministic,
    recalibrate: opt.Recalibrate = True,
    batch_size: opt.BatchSize = 128,
    workers: opt.Workers = 0,
    device: opt.Device = "auto",
    amp: opt.Amp = True,
    nproc: Annotated[int, typer.Option(help="Processes to train with (data parallel, one per GPU on CUDA): "
                                            "relaunches this command under torchrun.", min=1)] = 1,
    seed: opt.Seed = 0,
    resume: Annotated[bool, opt.flag("--resume", help="Continue an interrupted run from its last epoch.")] = False,
    history: Annotated[Optional[str], typer.Option(help="History JSON (default: OUTPUT stem + "
                                                    ".history.json).")] = None,
    trust_model: opt.TrustModel = False,
    as_json: Annotated[bool, opt.flag("--json", help="Print the result as JSON on stdout.")] = False,
    force: opt.Force = False,
) -> None:
    """Fine-tune a binarized model with the straight-through estimator to win back accuracy."""
    err = Console(stderr=True)
    kwargs = parse_kwargs(arch_kwargs)
    with reported_errors(ctx):
        from bnnc.device import resolve_device
        from bnnc.distributed import World, launched_by_torchrun, local_batch_size, main_process
        from bnnc.training import finetune, prepare

        config = finetune_config(epochs, batch_size, lr, optimizer, schedule, weight_decay, distill, temperature,
                                 distill_weight, glorot_lr, bn, binarize, recalibrate, seed, device, workers, amp)
        if nproc > 1 and not launched_by_torchrun():  # bad input gets its one line here, not once per process
            resolve_device(device)
            local_batch_size(batch_size, World(0, nproc))
            prepare(model, data, output, resume=resume, overwrite=force, trust_model=trust_model,
                    history_path=history, distill=distill, teacher=teacher, arch=arch, arch_kwargs=kwargs)
            raise typer.Exit(_torchrun(nproc))
        with _Renderer(err) as render:
            result = finetune(model, data, config, output, resume=resume, overwrite=force, teacher=teacher,
                              arch=arch, arch_kwargs=kwargs, trust_model=trust_model, history_path=history,
                              on_event=render)
    if not main_process():
        return
    if as_json:
        typer.echo(json.dumps(result_dict(result), indent=2))
    else:
        summary(result, Console())


def finetune_config(epochs: int, batch_size: int, lr: float | None, optimizer: OptimizerChoice,
                    schedule: ScheduleChoice, weight_decay: float, distill: bool, temperature: float,
                    distill_weight: float, glorot_lr: bool, bn: BatchNormChoice, binarize: BinarizeChoice,
                    recalibrate: bool, seed: int, device: str, workers: int, amp: bool) -> FinetuneConfig:
    """The fine-tuning options as the library's config (shared with ``bnnc compress``)."""
    from bnnc.training import FinetuneConfig

    return FinetuneConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer.value, schedule=schedule.value,
        weight_decay=weight_decay, distill=distill, temperature=temperature, distill_weight=distill_weight,
        glorot_lr=glorot_lr, shift_bn=bn is BatchNormChoice.shift, stochastic=binarize is BinarizeChoice.stochastic,
        recalibrate=recalibrate, seed=seed, device=device, workers=workers, amp=amp,
    )


def _torchrun(nproc: int) -> int:
    """Run this very command line again under ``torchrun --standalone --nproc_per_node=nproc``."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))  # the processes share the cores
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    from bnnc.distributed import LAUNCHER, die_with_parent

    env[LAUNCHER] = str(os.getpid())
    return subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc_per_node={nproc}", "-m", "bnnc", *args], env=env, preexec_fn=die_with_parent)


def result_dict(result: FinetuneResult) -> dict[str, Any]:
    return {
        "output": str(result.output), "history": str(result.history_path),
        "fp32_accuracy": result.fp32_accuracy, "converted_accuracy": result.converted_accuracy,
        "recalibrated_accuracy": result.recalibrated_accuracy, "best_accuracy": result.best_accuracy,
        "best_epoch": result.best_epoch, "seconds": round(result.seconds, 2),
        "epochs": [asdict(r) for r in result.history],
    }


class _Renderer:
    """Turns finetune events into a progress bar and one line per epoch, on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console, transient=True,
        )
        self.task: Any = None
        self.label = ""

    def __enter__(self) -> _Renderer:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def _bar(self, label: str, done: int, total: int, info: str = "") -> None:
        """One bar at a time: a new label replaces the previous bar."""
        if self.task is None or label != self.label:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task, self.label = self.progress.add_task(label, total=total, info=info), label
        self.progress.update(self.task, completed=done, total=total, info=info)

    def __call__(self, event: Event) -> None:
        from bnnc.training import BatchEnd, Calibrating, EpochEnd, Started

        if isinstance(event, Calibrating):
            what = "recalibrating BatchNorm and thresholds" if event.batchnorm else "calibrating thresholds"
            self._bar(what, event.done, event.total)
        elif isinstance(event, Started):
            fp32 = f"{event.fp32_accuracy:.2%}" if event.fp32_accuracy is not None else "unknown"
            recal = (f", after recalibration {event.recalibrated_accuracy:.2%}"
                     if event.recalibrated_accuracy is not None else "")
            self.console.print(f"FP32 {fp32}, binarized {event.converted_accuracy:.2%}{recal} "
                               f"({event.val_samples:,} validation samples; training on {event.train_samples:,} "
                               f"on {event.device})")
            if event.start_epoch > 1:
                self.console.print(f"resuming at epoch {event.start_epoch}")
            if event.dropped_samples:
                self.console.print(f"the last batch of each epoch, {event.dropped_samples} sample(s), is left out: "
                                   "BatchNorm can't train on a batch of one (recorded in the history)")
        elif isinstance(event, BatchEnd):
            self._bar(f"epoch {event.epoch}", event.batch, event.batches,
                      f"loss {event.loss:.4f}  acc {event.accuracy:.2%}  {event.samples_per_s:,.0f} samples/s")
        elif isinstance(event, EpochEnd):
            r = event.record
            star = "  [green]★ best[/]" if event.best else ""
            self.console.print(
                f"epoch {r.epoch}: train loss {r.train_loss:.4f} acc {r.train_accuracy:.2%} │ val loss "
                f"{r.val_loss:.4f} acc {r.val_accuracy:.2%} │ lr {r.lr:.2g} │ flips {r.flip_share:.2%} │ "
                f"{r.seconds:.1f} s{star}"
            )


def summary(result: FinetuneResult, console: Console) -> None:
    table = Table(title="Fine-tuning", title_justify="left")
    table.add_column("model")
    table.add_column("accuracy", justify="right")
    table.add_column("vs FP32", justify="right")
    fp32 = result.fp32_accuracy

    def row(name: str, acc: float | None) -> None:
        if acc is None:
            return
        drop = f"{(acc - fp32) * 100:+.2f} pt" if fp32 is not None else ""
        table.add_row(name, f"{acc:.2%}", drop)

    row("FP32 source", fp32)
    row("binarized, as converted", result.converted_accuracy)
    row("after BN/threshold recalibration", result.recalibrated_accuracy)
    row(f"fine-tuned (best: epoch {result.best_epoch})", result.best_accuracy)
    console.print(table)
    console.print(f"wrote {result.output} and {result.history_path} in {result.seconds:.0f} s")
