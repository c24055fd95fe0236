"""``bnnc finetune``: train a binarized checkpoint with the STE; progress on stderr, summary on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Set as AbstractSet
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console

from bnnc import defaults
from bnnc.cli import options as opt
from bnnc.cli import render
from bnnc.cli.choices import DEFAULT_STE, BatchNormChoice, BinarizeChoice, OptimizerChoice, ScheduleChoice, SteChoice
from bnnc.cli.convert import parse_kwargs, parse_normalisation
from bnnc.cli.errors import reported_errors

if TYPE_CHECKING:
    from bnnc.training import FinetuneConfig, FinetuneResult


def finetune_command(
    ctx: typer.Context,
    model: Annotated[Optional[Path], typer.Argument(
        metavar="MODEL", help="Binarized checkpoint written by `bnnc convert` (default: the one in the working "
        "directory).", show_default=False)] = None,
    data: Annotated[Optional[str], typer.Option(help="Training data: IDX folder, .npz, .pt, image folder, or "
                                                     "pkg.module:function or file.py:function; or `data` in the "
                                                     "config file; default: the data MODEL records (convert --data)."
                                                     )] = None,
    mean: opt.Mean = None,
    std: opt.Std = None,
    epochs: Annotated[Optional[int], typer.Option(
        help=f"Epochs to train; or `epochs` in the config file \\[default: {defaults.FINETUNE_EPOCHS}].", min=1,
        max=100_000)] = None,
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="Best checkpoint "
                                                   "(default: MODEL.finetuned.bnnc).")] = None,
    lr: opt.LearningRate = None,
    optimizer: opt.Optimizer = OptimizerChoice.adam,
    schedule: opt.Schedule = ScheduleChoice.cosine,
    weight_decay: opt.WeightDecay = defaults.WEIGHT_DECAY,
    distill: opt.Distill = True,
    temperature: opt.Temperature = defaults.TEMPERATURE,
    distill_weight: opt.DistillWeight = defaults.DISTILL_WEIGHT,
    teacher: opt.Teacher = None,
    arch: opt.Arch = None,
    arch_kwargs: opt.ArchKwargs = None,
    glorot_lr: opt.GlorotLr = False,
    bn: opt.BatchNorm = BatchNormChoice.standard,
    binarize: opt.Binarize = BinarizeChoice.deterministic,
    recalibrate: opt.Recalibrate = True,
    ste: opt.Ste = DEFAULT_STE,
    two_step: opt.TwoStep = defaults.TWO_STEP,
    bn_reestimate: opt.BnReestimate = defaults.BN_REESTIMATE,
    warmup: opt.Warmup = defaults.WARMUP,
    latent_lr: opt.LatentLr = defaults.LATENT_LR,
    equalize_latent: opt.EqualizeLatent = defaults.EQUALIZE_LATENT,
    bop: opt.Bop = defaults.BOP,
    bop_gamma: opt.BopGamma = defaults.BOP_GAMMA,
    bop_threshold: opt.BopThreshold = defaults.BOP_THRESHOLD,
    batch_size: opt.BatchSize = None,
    workers: opt.Workers = defaults.WORKERS,
    device: opt.Device = "auto",
    amp: opt.Amp = True,
    nproc: Annotated[int, typer.Option(help="Processes to train with (data parallel, one per GPU on CUDA): "
                                            "relaunches this command under torchrun.", min=1)] = 1,
    seed: opt.Seed = defaults.SEED,
    resume: Annotated[bool, opt.flag("--resume", help="Continue an interrupted run from its last epoch.")] = False,
    history: Annotated[Optional[str], typer.Option(help="History JSON (default: OUTPUT stem + "
                                                    ".history.json).")] = None,
    trust_model: opt.TrustModel = False,
    as_json: Annotated[bool, opt.flag("--json", help="Print the result as JSON on stdout.")] = False,
    config_file: opt.ConfigFile = None,
    force: opt.Force = False,
) -> None:
    """Fine-tune a binarized model with the straight-through estimator to win back accuracy."""
    err = Console(stderr=True)
    kwargs = parse_kwargs(arch_kwargs)
    normalisation = parse_normalisation(mean, std)
    with reported_errors(ctx):
        from bnnc.config import load_config, merge
        from bnnc.device import resolve_device
        from bnnc.distributed import World, launched_by_torchrun, local_batch_size, main_process
        from bnnc.training import finetune, prepare

        model = model or opt.taken("finetune", err)
        o = merge(load_config(config_file)[0], data=data, epochs=epochs, batch_size=batch_size)
        spec = o["data"] if "data" in o else opt.data_taken("finetune", model, err)
        batch_size = o.get("batch_size", defaults.BATCH_SIZE)
        config = finetune_config(
            epochs=o.get("epochs", defaults.FINETUNE_EPOCHS), batch_size=batch_size, lr=lr, optimizer=optimizer,
            schedule=schedule,
            weight_decay=weight_decay, distill=distill, temperature=temperature, distill_weight=distill_weight,
            glorot_lr=glorot_lr, bn=bn, binarize=binarize, recalibrate=recalibrate, ste=ste, two_step=two_step,
            bn_reestimate=bn_reestimate, warmup=warmup, latent_lr=latent_lr, equalize_latent=equalize_latent, bop=bop,
            bop_gamma=bop_gamma,
            bop_threshold=bop_threshold, seed=seed, device=device,
            workers=workers, amp=amp)
        if nproc > 1 and not launched_by_torchrun():  # bad input gets its one line here, not once per process
            resolve_device(device)
            local_batch_size(batch_size, World(0, nproc))
            prepare(model, spec, output, resume=resume, overwrite=force, trust_model=trust_model,
                    history_path=history, distill=distill, teacher=teacher, arch=arch, arch_kwargs=kwargs,
                    normalisation=normalisation)
            raise typer.Exit(_torchrun(ctx, nproc))
        with render.FinetuneProgress(err) as progress:
            result = finetune(model, spec, config, output, resume=resume, overwrite=force, teacher=teacher,
                              arch=arch, arch_kwargs=kwargs, trust_model=trust_model, history_path=history,
                              normalisation=normalisation, on_event=progress)
    if not main_process():
        return
    if as_json:
        typer.echo(json.dumps(result_dict(result), indent=2))
    else:
        render.finetuned(result, Console())
    for warning in result.warnings:
        if warning not in progress.warned:
            err.print(f"[yellow]warning:[/] {warning}")


def finetune_config(*, optimizer: OptimizerChoice, schedule: ScheduleChoice, bn: BatchNormChoice,
                    binarize: BinarizeChoice, ste: SteChoice, **options: Any) -> FinetuneConfig:
    """The fine-tuning options as the library's config (shared with ``bnnc compress``): the choices as their
    values, ``bn`` and ``binarize`` as the config's switches, every other option by its own name."""
    from bnnc.training import FinetuneConfig

    return FinetuneConfig(optimizer=optimizer.value, schedule=schedule.value, shift_bn=bn is BatchNormChoice.shift,
                          stochastic=binarize is BinarizeChoice.stochastic, ste=ste.value, **options)


def _torchrun(ctx: typer.Context, nproc: int) -> int:
    """Run this command again, with the options it was given, under ``torchrun --standalone --nproc_per_node``."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))  # the processes share the cores
    from bnnc.distributed import LAUNCHER, die_with_parent

    env[LAUNCHER] = str(os.getpid())
    return subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc_per_node={nproc}", "-m", "bnnc", *command_line(ctx, drop={"nproc"})],
                           env=env, preexec_fn=die_with_parent)


def command_line(ctx: typer.Context, *, drop: AbstractSet[str] = frozenset()) -> list[str]:
    """The arguments that run ``ctx``'s command again as it was parsed (global options, the command's name,
    every parameter not at its default, in canonical spelling), less the parameters in ``drop``."""
    parent = ctx.parent
    args = _arguments(parent.command.params, parent.params, drop) if parent is not None else []
    return [*args, str(ctx.info_name), *_arguments(ctx.command.params, ctx.params, drop)]


def _arguments(params: list[Any], values: dict[str, Any], drop: AbstractSet[str]) -> list[str]:
    """click parameters (typer's own click, or click) and their parsed values, as command-line arguments."""
    args: list[str] = []
    for param in params:
        value = values.get(param.name or "")
        argument = param.param_type_name == "argument"
        if param.name in drop or value is None or (not argument and value == param.default):
            continue
        if argument:
            args.append(str(value))
        elif param.is_flag and not param.secondary_opts:
            args.append(param.opts[-1])
        elif param.is_flag:
            args.append(param.opts[-1] if value else param.secondary_opts[-1])
        else:
            for item in value if param.multiple else (value,):
                args += [param.opts[-1], str(getattr(item, "value", item))]
    return args


def result_dict(result: FinetuneResult) -> dict[str, Any]:
    return {
        "output": str(result.output), "history": str(result.history_path),
        "fp32_accuracy": result.fp32_accuracy, "converted_accuracy": result.converted_accuracy,
        "recalibrated_accuracy": result.recalibrated_accuracy, "best_accuracy": result.best_accuracy,
        "best_epoch": result.best_epoch, "seconds": round(result.seconds, 2),
        "epochs": [asdict(r) for r in result.history],
    }


