"""convert(model, plan) -> a new model whose planned layers are binary; the input is never modified.

``convert_file`` is the whole ``bnnc convert`` step on files: load, plan, convert, calibrate, save.

The module swap is one explicit table: exact ``nn.Linear``/``nn.Conv1d``/``nn.Conv2d`` become
their binary counterparts; BatchNorm, activations and residual additions stay real-valued.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bnnc import __version__
from bnnc.calibrate import calibrate_thresholds
from bnnc.data import DataSpec
from bnnc.errors import BnncError, PlanError
from bnnc.export import predicted_payload
from bnnc.int8 import INT8_COUNTERPART
from bnnc.io import check_output, load_checkpoint, save_checkpoint
from bnnc.layers import BinaryConv1d, BinaryConv2d, BinaryLayer, BinaryLinear, set_submodule
from bnnc.planning import Plan, PlanRules, Precision
from bnnc.planning import plan as make_plan
from bnnc.resolve import calibration_loader, data_for_model, require_fp32, stated_input_shape
from bnnc.shift import use_shift_batchnorm
from bnnc.summary import ConversionSummary, summarize

if TYPE_CHECKING:
    from bnnc.sensitivity import AutoPlan, Budget, Sensitivity

BINARY_COUNTERPART: dict[type[nn.Module], type[BinaryLayer]] = {
    nn.Linear: BinaryLinear,
    nn.Conv1d: BinaryConv1d,
    nn.Conv2d: BinaryConv2d,
}


@dataclass(frozen=True)
class ConvertOptions:
    """How binary layers are built. Stored in the checkpoint so the model rebuilds identically.

    ``scale``: per-output-channel alpha (init mean |W|). ``threshold``: per-input-channel beta in
    ``binarize(x - beta)``. ``stochastic``: stochastic activation binarization at train time.
    ``shift_bn``: the paper's shift-based BatchNorm in place of every BatchNorm layer.
    """

    scale: bool = True
    threshold: bool = True
    stochastic: bool = False
    shift_bn: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConvertOptions:
        unknown = set(d) - {"scale", "threshold", "stochastic", "shift_bn"}
        if unknown or not all(isinstance(v, bool) for v in d.values()):
            raise BnncError(f"the stored conversion options are malformed: {d!r}",
                            "re-run `bnnc convert` on the FP32 model")
        return cls(**d)


def convert(model: nn.Module, plan: Plan | None = None, options: ConvertOptions | None = None) -> nn.Module:
    """A deep copy of ``model`` with every layer the plan marks ``weights``/``binary``/``int8`` swapped.

    Without a plan, the default :func:`bnnc.plan` (input shape probed from the first layer).

    ``weights`` layers keep a real-valued input; ``binary`` layers get an input binarizer whose
    thresholds start at 0 and ``int8`` layers have no input range yet (call :func:`bnnc.calibrate_thresholds`
    with real inputs afterwards).
    """
    plan = plan or make_plan(model)
    options = options or ConvertOptions()
    new = copy.deepcopy(model)
    for layer in plan.layers:
        if layer.precision is Precision.FP32:
            continue
        try:
            module = new.get_submodule(layer.name)
        except AttributeError:
            raise PlanError(f"the plan names layer {layer.name!r}, which the model doesn't have",
                            "make the plan from this model: bnnc.plan(model)") from None
        counterpart = (INT8_COUNTERPART if layer.precision is Precision.INT8 else BINARY_COUNTERPART).get(type(module))
        if counterpart is None:
            raise PlanError(f"layer {layer.name!r} is a {type(module).__name__}, which bnnc can't binarize",
                            "plan it as fp32")
        if layer.precision is Precision.INT8:
            binary = counterpart.from_float(module)  # type: ignore[attr-defined]
        else:
            binary = counterpart.from_float(  # type: ignore[attr-defined]
                module, binary_input=layer.precision is Precision.BINARY, scale=options.scale,
                threshold=options.threshold, stochastic=options.stochastic,
            )
        binary.train(module.training)
        set_submodule(new, layer.name, binary)
    if options.shift_bn:
        use_shift_batchnorm(new)
    return new


@dataclass(frozen=True)
class ConversionResult:
    """What :func:`convert_file` wrote and what the conversion costs and saves."""

    output: Path
    summary: ConversionSummary
    calibration: dict[str, Any] | None   # {"samples": n, "data": description} when thresholds were calibrated
    sensitivity: Sensitivity | None = None  # per-layer accuracy drop, when asked for
    auto: AutoPlan | None = None             # the plan chosen under a budget, when one was given
    warnings: tuple[str, ...] = ()           # what in the plan may keep the model from recovering


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
    calibration_batches: int = 8,
    measure_sensitivity: bool = False,
    budget: Budget | None = None,
    overwrite: bool = False,
    on_layer: Callable[[str], None] | None = None,
    on_calibration: Callable[[int, int], None] | None = None,
) -> ConversionResult:
    """Load an FP32 model file, plan, convert, calibrate thresholds on ``data``, save a bnnc checkpoint.

    ``output`` defaults to the model path with suffix ``.bnnc``. The input file is never
    modified and an existing output is only replaced with ``overwrite``. Without ``data`` the
    thresholds stay 0 (plain sign), and ``bnnc finetune`` calibrates them before training.
    With ``measure_sensitivity`` each layer's accuracy drop, binarized alone, is measured on
    ``data``; with a ``budget`` the plan binarizes the least-sensitive layers until it is met
    (see :mod:`bnnc.sensitivity`). ``on_layer`` is called with each layer measured,
    ``on_calibration`` with (batches done, batches in all) while thresholds are calibrated.
    """
    src = Path(model_path)
    out = Path(output) if output is not None else src.with_suffix(".bnnc")
    check_output(output if output is not None else out, inputs=(src, data), overwrite=overwrite)
    loaded = require_fp32(load_checkpoint(src, arch=arch, arch_kwargs=arch_kwargs, trust_model=trust_model))
    if calibration_batches < 1:
        raise BnncError(f"calibration batches must be >= 1, got {calibration_batches}")
    shape = stated_input_shape(loaded, input_shape)
    splits = None if data is None else data_for_model(data, loaded, input_shape=shape)
    if splits is not None:
        shape = splits.preprocessing.input_shape  # the shape the data meets the model in
    options = options or ConvertOptions()
    the_plan = make_plan(loaded.model, rules, input_shape=shape)
    measured = auto = None
    if measure_sensitivity or budget is not None:
        from bnnc.sensitivity import auto_plan, sensitivity  # it converts with this module: imported late

        if splits is None:
            raise BnncError("measuring sensitivity needs data", "pass --data")
        measured = sensitivity(loaded.model, splits, the_plan, options, on_layer=on_layer)
        if budget is not None:
            auto = auto_plan(loaded.model, splits, the_plan, budget, options, measured=measured, on_layer=on_layer)
            the_plan = auto.plan
    model = convert(loaded.model, the_plan, options)

    calibration = None
    preprocessing = loaded.preprocessing
    if splits is not None:
        preprocessing = splits.preprocessing.to_dict()
        samples = calibrate_thresholds(model, calibration_loader(splits.train), max_batches=calibration_batches,
                                       on_batch=on_calibration)
        calibration = {"samples": samples, "data": splits.source}

    summary = summarize(loaded.model, model, the_plan, predicted_payload(model, the_plan.input_shape))
    save_checkpoint(
        out,
        state_dict=model.state_dict(),
        arch=loaded.arch,
        arch_kwargs=loaded.arch_kwargs,
        preprocessing=preprocessing,
        metrics=loaded.metrics,
        binarized={
            "plan": the_plan.to_dict(),
            "options": options.to_dict(),
            "source": {"path": str(src.resolve()), "sha256": loaded.sha256, "form": loaded.form},
            "calibration": calibration,
            "sensitivity": measured.to_dict() if measured else None,
            "auto_plan": {**auto.to_dict(), "target_bytes": budget.target_bytes,
                          "max_accuracy_drop": budget.max_accuracy_drop} if auto and budget else None,
            "bnnc_version": __version__,
        },
        overwrite=overwrite,
    )
    return ConversionResult(output=out, summary=summary, calibration=calibration, sensitivity=measured, auto=auto,
                            warnings=the_plan.warnings)
