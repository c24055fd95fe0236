"""``bnnc convert``: FP32 model file -> binarized bnnc checkpoint, with the plan and its cost."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console

from bnnc import defaults
from bnnc.cli import options as opt
from bnnc.cli import render
from bnnc.cli.choices import BinarizeChoice, PrecisionChoice
from bnnc.cli.errors import reported_errors

if TYPE_CHECKING:
    from bnnc.conversion import ConversionResult
    from bnnc.data import Normalisation
    from bnnc.planning import PlanRules


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``"1,28,28"`` -> ``(1, 28, 28)``: the per-sample input shape, without the batch."""
    if text is None:
        return None
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise typer.BadParameter(f"{text!r} is not a shape; give positive integers like 1,28,28",
                                 param_hint="'--input-shape'")
    return shape


def parse_normalisation(mean: str | None, std: str | None) -> Normalisation | None:
    """``--mean 0.1307 --std 0.3081`` (comma-separated per channel) -> the stated normalisation; both or neither."""
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        given, missing = ("--mean", "--std") if std is None else ("--std", "--mean")
        raise typer.BadParameter(f"{given} needs {missing} too: give both, the values the model was trained with",
                                 param_hint=f"'{missing}'")
    from bnnc.data import Normalisation
    from bnnc.errors import DataError

    values = {}
    for name, text in (("--mean", mean), ("--std", std)):
        try:
            values[name] = tuple(float(s) for s in text.split(","))
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not a list of numbers; e.g. 0.485,0.456,0.406",
                                     param_hint=f"'{name}'") from None
    try:
        return Normalisation(values["--mean"], values["--std"])
    except DataError as e:
        raise typer.BadParameter(e.message, param_hint="'--mean/--std'") from None


def parse_kwargs(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"not valid JSON ({e.msg}); e.g. '{{\"num_classes\": 10}}'",
                                 param_hint="'--arch-kwargs'") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object, e.g. '{\"num_classes\": 10}'", param_hint="'--arch-kwargs'")
    return value


def convert_command(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="FP32 model: a bnnc/arch checkpoint, a state dict "
                                          "(with --arch), a torch.export program (.pt2), or a pickled nn.Module "
                                          "(with --trust-model).")],
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="Where to write the binarized "
                                                   "checkpoint (default: MODEL with suffix .bnnc).")] = None,
    arch: opt.Arch = None,
    arch_kwargs: opt.ArchKwargs = None,
    trust_model: opt.TrustModel = False,
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
    input_shape: opt.InputShape = None,
    data: Annotated[Optional[str], typer.Option(help="Data to calibrate thresholds on (IDX folder, .npz, .pt, "
                                                "image folder, or pkg.module:function / file.py:function); or "
                                                "`data` in the config file.")] = None,
    mean: opt.Mean = None,
    std: opt.Std = None,
    calibration_batches: opt.CalibrationBatches = defaults.CALIBRATION_BATCHES,
    sensitivity: Annotated[bool, opt.flag("--sensitivity", help="Measure each layer's accuracy drop when it alone "
                                          "is binarized (needs --data).")] = False,
    target_size: Annotated[Optional[str], typer.Option(help="Automatic plan: binarize the least sensitive layers "
                                                       "until the model is this small, e.g. 500KB, 2MiB "
                                                       "(needs --data).")] = None,
    max_accuracy_drop: Annotated[Optional[float], typer.Option(help="Automatic plan: keep layers FP32 so the "
                                                               "accuracy drop stays within this many points "
                                                               "(needs --data).", min=0, max=100,
                                                               callback=opt.finite)] = None,
    as_json: Annotated[bool, opt.flag("--json", help="Print the plan and totals as JSON on stdout.")] = False,
    config: opt.ConfigFile = None,
    force: opt.Force = False,
) -> None:
    """Replace hidden layers with binarized ones and save a bnnc checkpoint."""
    shape = parse_shape(input_shape)
    kwargs = parse_kwargs(arch_kwargs)
    target = parse_size(target_size)
    normalisation = parse_normalisation(mean, std)
    err = Console(stderr=True)
    with reported_errors(ctx):
        from bnnc.config import load_config, merge
        from bnnc.conversion import ConvertOptions, convert_file
        from bnnc.sensitivity import Budget

        data = merge(load_config(config)[0], data=data).get("data")
        budget = None if target is None and max_accuracy_drop is None else Budget(
            target, None if max_accuracy_drop is None else max_accuracy_drop / 100)
        with err.status(f"converting {model}") as status:
            result = convert_file(
                model, output, arch=arch, arch_kwargs=kwargs, trust_model=trust_model,
                rules=plan_rules(first, last, keep, binary, weights, min_params, min_fan_in, int8),
                options=ConvertOptions(scale=scale, threshold=threshold,
                                       stochastic=binarize is BinarizeChoice.stochastic),
                input_shape=shape, data=data, normalisation=normalisation, calibration_batches=calibration_batches,
                measure_sensitivity=sensitivity, budget=budget, overwrite=force,
                on_event=lambda event: status.update(render.status_line(event)),
            )
    if as_json:
        typer.echo(json.dumps(result_dict(result), indent=2))
    else:
        render.converted(result, Console())
        for warning in result.warnings:
            err.print(f"[yellow]warning:[/] {warning}")
        err.print(f"wrote {result.output}")


def plan_rules(first: PrecisionChoice | None, last: PrecisionChoice | None, keep: list[str] | None,
               binary: list[str] | None, weights: list[str] | None, min_params: int, min_fan_in: int,
               int8: list[str] | None = None) -> PlanRules:
    """The plan options as the library's rules (shared with ``bnnc compress``)."""
    from bnnc.planning import PlanRules, Precision

    return PlanRules(first=Precision(first.value) if first else None, last=Precision(last.value) if last else None,
                     keep=tuple(keep or ()), binary=tuple(binary or ()), weights=tuple(weights or ()),
                     int8=tuple(int8 or ()), min_params=min_params, min_fan_in=min_fan_in)


def parse_size(text: str | None) -> int | None:
    """``"500KB"`` -> 500000, ``"2MiB"`` -> 2097152, ``"123456"`` -> 123456 bytes."""
    if text is None:
        return None
    units = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "k": 1000, "mb": 1000**2, "mib": 1024**2, "m": 1000**2,
             "gb": 1000**3, "gib": 1024**3, "g": 1000**3}
    number = text.strip().lower().rstrip("bikmg ")
    unit = text.strip().lower()[len(number):].strip()
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        raise typer.BadParameter(f"{text!r} is not a size; give bytes or e.g. 500KB, 1.5MiB",
                                 param_hint="'--target-size'") from None
    if not math.isfinite(value) or value < 1:
        raise typer.BadParameter(f"{text!r}: the size must be a finite number of bytes, at least 1",
                                 param_hint="'--target-size'")
    return int(value)


def result_dict(result: ConversionResult) -> dict[str, Any]:
    calibration = dataclasses.asdict(result.calibration) if result.calibration else None
    return {"output": str(result.output), "calibration": calibration, **result.summary.to_dict(),
            "sensitivity": result.sensitivity.to_dict() if result.sensitivity else None,
            "auto_plan": result.auto.to_dict() if result.auto else None}


