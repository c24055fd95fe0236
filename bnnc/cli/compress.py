"""``bnnc compress``: convert -> finetune -> export -> report in one command, into one folder.

It takes every option of the four steps (same names, same help: :mod:`bnnc.cli.options`), except
``finetune --nproc``/``--resume`` and the steps' output paths: everything goes into one folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from bnnc import defaults
from bnnc.cli import options as opt
from bnnc.cli import render
from bnnc.cli.choices import DEFAULT_STE, BatchNormChoice, BinarizeChoice, OptimizerChoice, ScheduleChoice
from bnnc.cli.convert import parse_kwargs, parse_normalisation, parse_shape, plan_rules
from bnnc.cli.errors import reported_errors
from bnnc.cli.finetune import finetune_config
from bnnc.cli.report import finish, limits_from


def compress_command(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="FP32 model (as for bnnc convert).")],
    data: Annotated[Optional[str], typer.Option(help="Training/evaluation data; or `data` in the config file.")]
        = None,
    epochs: Annotated[Optional[int], typer.Option(
        help=f"Fine-tuning epochs \\[default: {defaults.COMPRESS_EPOCHS}].", min=1, max=100_000)] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Folder for everything "
                                                   "(default: MODEL stem + '-bnnc').")] = None,
    arch: opt.Arch = None,
    arch_kwargs: opt.ArchKwargs = None,
    trust_model: opt.TrustModel = False,
    input_shape: opt.InputShape = None,
    mean: opt.Mean = None,
    std: opt.Std = None,
    first: opt.First = None,
    last: opt.Last = None,
    keep: opt.Keep = None,
    binary: opt.Binary = None,
    weights: opt.Weights = None,
    int8: opt.Int8 = None,
    min_params: opt.MinParams = defaults.MIN_PARAMS,
    min_fan_in: opt.MinFanIn = defaults.MIN_FAN_IN,
    scale: opt.Scale = True,
    threshold: opt.Threshold = True,
    binarize: opt.Binarize = BinarizeChoice.deterministic,
    calibration_batches: opt.CalibrationBatches = defaults.CALIBRATION_BATCHES,
    batch_size: opt.BatchSize = None,
    lr: opt.LearningRate = None,
    optimizer: opt.Optimizer = OptimizerChoice.adam,
    schedule: opt.Schedule = ScheduleChoice.cosine,
    weight_decay: opt.WeightDecay = defaults.WEIGHT_DECAY,
    distill: opt.Distill = True,
    temperature: opt.Temperature = defaults.TEMPERATURE,
    distill_weight: opt.DistillWeight = defaults.DISTILL_WEIGHT,
    teacher: opt.Teacher = None,
    glorot_lr: opt.GlorotLr = False,
    bn: opt.BatchNorm = BatchNormChoice.standard,
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
    workers: opt.Workers = defaults.WORKERS,
    device: opt.Device = "auto",
    amp: opt.Amp = True,
    seed: opt.Seed = defaults.SEED,
    uint8_input: Annotated[Optional[bool], opt.flag("--uint8-input/--float-input",
                                                    help="Export taking raw uint8 pixels.")] = None,
    float_ops: opt.FloatOps = False,
    fmt: Annotated[str, typer.Option("--format", help="Export formats, comma-separated: onnx (stock ONNX "
                                     "Runtime), openvino (XNOR-popcount IR, .xml + .bin; needs the openvino "
                                     "package), c (MODEL-c/NAME.h + NAME.c: dependency-free C99).")] = "onnx",
    check_samples: opt.CheckSamples = defaults.CHECK_SAMPLES,
    reference: opt.Reference = False,
    batch: opt.Batch = None,
    threads: opt.Threads = None,
    samples: opt.Samples = None,
    max_accuracy_drop: opt.MaxAccuracyDrop = None,
    min_compression: opt.MinCompression = None,
    min_speedup: opt.MinSpeedup = None,
    max_parity_mismatch: opt.MaxParityMismatch = None,
    min_openvino_speedup: opt.MinOpenvinoSpeedup = None,
    config: opt.ConfigFile = None,
    force: Annotated[bool, opt.flag("--force", help="Overwrite existing outputs in the folder.")] = False,
) -> None:
    """The whole job: binarize, fine-tune, export to ONNX and report, with CI thresholds."""
    err = Console(stderr=True)
    shape = parse_shape(input_shape)
    kwargs = parse_kwargs(arch_kwargs)
    normalisation = parse_normalisation(mean, std)
    with reported_errors(ctx):
        from bnnc.config import load_config, merge
        from bnnc.conversion import ConvertOptions
        from bnnc.errors import BnncError
        from bnnc.pipeline import compress

        file_options, _ = load_config(config)
        o = merge(file_options, data=data, epochs=epochs, batch_size=batch_size, uint8_input=uint8_input,
                  batch=batch, threads=threads, samples=samples, max_accuracy_drop=max_accuracy_drop,
                  min_compression=min_compression, min_speedup=min_speedup, max_parity_mismatch=max_parity_mismatch,
                  min_openvino_speedup=min_openvino_speedup)
        if "data" not in o:
            raise BnncError("no data", "pass --data, or set data in bnnc.toml")
        folder = output or model.with_name(f"{model.stem}-bnnc")
        ft_config = finetune_config(
            epochs=o.get("epochs", defaults.COMPRESS_EPOCHS), batch_size=o.get("batch_size", defaults.BATCH_SIZE),
            lr=lr, optimizer=optimizer, schedule=schedule, weight_decay=weight_decay, distill=distill,
            temperature=temperature, distill_weight=distill_weight, glorot_lr=glorot_lr, bn=bn, binarize=binarize,
            recalibrate=recalibrate, ste=ste, two_step=two_step, bn_reestimate=bn_reestimate, warmup=warmup,
            latent_lr=latent_lr, equalize_latent=equalize_latent, bop=bop, bop_gamma=bop_gamma,
            bop_threshold=bop_threshold, seed=seed, device=device, workers=workers, amp=amp)
        report_options = {k: v for k, v in (("threads", o.get("threads")), ("samples", o.get("samples")),
                                             ("batches", (1, o["batch"]) if "batch" in o else None)) if v is not None}
        with render.FinetuneProgress(err) as progress:
            result = compress(
                model, o["data"], folder, config=ft_config, limits=limits_from(o),
                uint8_input=bool(o.get("uint8_input", False)), float_ops=float_ops, arch=arch, arch_kwargs=kwargs,
                trust_model=trust_model,
                rules=plan_rules(first, last, keep, binary, weights, min_params, min_fan_in, int8),
                options=ConvertOptions(scale=scale, threshold=threshold,
                                       stochastic=binarize is BinarizeChoice.stochastic),
                input_shape=shape, normalisation=normalisation, calibration_batches=calibration_batches,
                teacher=teacher,
                check_samples=check_samples, reference_check=reference, overwrite=force,
                formats=tuple(f.strip() for f in fmt.split(",") if f.strip()),
                report_options=report_options, on_event=progress)
    for warning in result.warnings:
        if warning not in progress.warned:
            err.print(f"[yellow]warning:[/] {warning}")
    render.report(result.report, Console())
    files = ", ".join(str(p.name) for p in (result.converted, result.finetuned, result.history, *result.exported,
                                            *result.report_files.values()))
    err.print(f"wrote {files} in {result.folder}")
    finish(result.report)
