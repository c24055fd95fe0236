"""``bnnc convert`` on files: load the FP32 model, plan, swap the layers, calibrate, save a checkpoint.

``convert_file`` is the step; the layer swap itself is :func:`bnnc.swap.convert` (re-exported here,
with :class:`ConvertOptions`, as the public ``bnnc.convert``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from bnnc import defaults
from bnnc.calibrate import calibrate_on
from bnnc.checkpoint import BinarizedInfo, CalibrationInfo, SourceInfo, save_checkpoint
from bnnc.data import DataSpec, DataSplits, Normalisation
from bnnc.errors import BnncError
from bnnc.events import Calibrating, MeasuringLayer, OnEvent, Warned, emitter
from bnnc.export import predicted_payload
from bnnc.loading import load_checkpoint
from bnnc.outputs import check_output
from bnnc.planning import PlanRules
from bnnc.planning import plan as make_plan
from bnnc.resolve import data_for_model, guess_warning, output_size, require_fp32, stated_input_shape
from bnnc.sensitivity import AutoPlan, Budget, Sensitivity, auto_plan, sensitivity
from bnnc.summary import ConversionSummary, summarize
from bnnc.swap import BINARY_COUNTERPART, ConvertOptions, convert

__all__ = ["BINARY_COUNTERPART", "ConversionResult", "ConvertOptions", "convert", "convert_file"]


@dataclass(frozen=True)
class ConversionResult:
    """What :func:`convert_file` wrote and what the conversion costs and saves."""

    output: Path
    summary: ConversionSummary
    calibration: CalibrationInfo | None      # when thresholds were calibrated on data
    sensitivity: Sensitivity | None = None  # per-layer accuracy drop, when asked for
    auto: AutoPlan | None = None             # the plan chosen under a budget, when one was given
    warnings: tuple[str, ...] = ()           # what in the plan may keep the model from recovering; a guessed input


def convert_file(
    model_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    trust_model: bool = False,
    rules: PlanRules | None = None,
    options: ConvertOptions | None = None,
    input_shape: Sequence[int] | None = None,
    data: DataSpec | None = None,
    normalisation: Normalisation | None = None,
    calibration_batches: int = defaults.CALIBRATION_BATCHES,
    measure_sensitivity: bool = False,
    budget: Budget | None = None,
    overwrite: bool = False,
    on_event: OnEvent | None = None,
    on_layer: Callable[[str], None] | None = None,
    on_calibration: Callable[[int, int], None] | None = None,
) -> ConversionResult:
    """Load an FP32 model file, plan, convert, calibrate thresholds on ``data``, save a bnnc checkpoint.

    ``output`` defaults to the model path with suffix ``.bnnc``. The input file is never
    modified and an existing output is only replaced with ``overwrite``. Without ``data`` the
    thresholds stay 0 (plain sign), and ``bnnc finetune`` calibrates them before training.
    With ``measure_sensitivity`` each layer's accuracy drop, binarized alone, is measured on
    ``data``; with a ``budget`` the plan binarizes the least-sensitive layers until it is met
    (see :mod:`bnnc.sensitivity`). ``normalisation`` states the mean/std the model was trained with
    (recorded with the data's shape; else they are derived from ``data``). ``on_event`` receives
    :class:`~bnnc.events.MeasuringLayer` for each layer measured and :class:`~bnnc.events.Calibrating`
    while thresholds are calibrated (``on_layer`` and ``on_calibration``, the callbacks' old names,
    are deprecated).
    """
    emit = emitter(on_event, "convert_file", on_layer=(on_layer, MeasuringLayer, lambda e: (e.name,)),
                   on_calibration=(on_calibration, Calibrating, lambda e: (e.done, e.total)))
    src = Path(model_path)
    out = Path(output) if output is not None else src.with_suffix(".bnnc")
    check_output(output if output is not None else out, inputs=(src, data), overwrite=overwrite)
    loaded = require_fp32(load_checkpoint(src, arch=arch, arch_kwargs=arch_kwargs, trust_model=trust_model))
    if calibration_batches < 1:
        raise BnncError(f"calibration batches must be >= 1, got {calibration_batches}")
    if (measure_sensitivity or budget is not None) and data is None:
        raise BnncError("measuring sensitivity needs data", "pass --data")
    if normalisation is not None and data is None:
        raise BnncError("--mean/--std say how data is normalised, but no data was given",
                        "pass --data, or give --mean/--std to bnnc finetune")
    shape = stated_input_shape(loaded, input_shape)
    splits = None if data is None else data_for_model(data, loaded, input_shape=shape, normalisation=normalisation)
    guessed = (guess_warning(splits),) if splits is not None and splits.guessed else ()
    for text in guessed:
        emit(Warned(text))
    options = options or ConvertOptions()

    the_plan = make_plan(loaded.model, rules, input_shape=splits.preprocessing.input_shape if splits else shape)
    if splits is None:  # (data_for_model checked it with the data)
        output_size(loaded.model, the_plan.input_shape, src)
    measured = auto = None
    if splits is not None and (measure_sensitivity or budget is not None):
        measured = sensitivity(loaded.model, splits, the_plan, options, on_event=emit)
        if budget is not None:
            auto = auto_plan(loaded.model, splits, the_plan, budget, options, measured=measured, on_event=emit)
            the_plan = auto.plan
    model = convert(loaded.model, the_plan, options)
    calibration = None if splits is None else _calibrate(model, splits, calibration_batches, emit)

    info = BinarizedInfo(
        plan=the_plan, options=options,
        source=SourceInfo(path=str(src.resolve()), sha256=loaded.sha256, form=loaded.form),
        calibration=calibration,
        sensitivity=measured.to_dict() if measured else None,
        auto_plan={**auto.to_dict(), "target_bytes": budget.target_bytes,
                   "max_accuracy_drop": budget.max_accuracy_drop} if auto and budget else None,
    )
    summary = summarize(loaded.model, model, the_plan, predicted_payload(model, the_plan.input_shape))
    save_checkpoint(out, state_dict=model.state_dict(), arch=loaded.arch, arch_kwargs=loaded.arch_kwargs,
                    preprocessing=splits.preprocessing.to_dict() if splits else loaded.preprocessing,
                    metrics=loaded.metrics, binarized=info, overwrite=overwrite)
    return ConversionResult(output=out, summary=summary, calibration=calibration, sensitivity=measured, auto=auto,
                            warnings=the_plan.warnings + guessed)


def _calibrate(model: nn.Module, splits: DataSplits, batches: int, emit: OnEvent) -> CalibrationInfo:
    """Input thresholds (and int8 input ranges) from up to ``batches`` training batches."""
    samples = calibrate_on(model, splits.train, batches,
                                   on_batch=lambda done, total: emit(Calibrating(done, total, batchnorm=False)))
    return CalibrationInfo(samples=samples, data=splits.source, data_path=splits.path)
