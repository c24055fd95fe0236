"""The layer swap: ``convert(model, plan)`` -> a new model whose planned layers are binary (or int8);
the input is never modified.

The swap is one explicit table: exact ``nn.Linear``/``nn.Conv1d``/``nn.Conv2d`` become their binary
counterparts; BatchNorm, activations and residual additions stay real-valued. It sits below the
checkpoint format, which rebuilds a converted model with it.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from bnnc.errors import BnncError, PlanError
from bnnc.int8 import INT8_COUNTERPART
from bnnc.layers import BinaryConv1d, BinaryConv2d, BinaryLayer, BinaryLinear, set_submodule
from bnnc.planning import Plan, Precision
from bnnc.planning import plan as make_plan
from bnnc.shift import use_shift_batchnorm

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


def _weight_hooks(model: nn.Module) -> list[tuple[nn.Module, Any]]:
    """Each layer whose weight ``torch.nn.utils.weight_norm``/``spectral_norm`` (the hook-based forms, common in
    audio models) computes before every call, with its hook."""
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    return [(m, hook) for m in model.modules() for hook in list(m._forward_pre_hooks.values())
            if isinstance(hook, (WeightNorm, SpectralNorm))]


def plain_weights(model: nn.Module) -> nn.Module:
    """``model`` with each computed weight folded into the plain parameter it computes in eval, in place: the
    hook-based ``weight_norm``/``spectral_norm`` (:func:`_weight_hooks`; a computed tensor, which ``copy.deepcopy``
    — every bnnc step copies the model — refuses once a forward pass with gradients ran) and the
    ``torch.nn.utils.parametrizations`` forms (``ParametrizedLinear`` is no ``nn.Linear`` to swap: a training-time
    reparametrization, its layers would stay FP32)."""
    from torch.nn.utils import parametrize, remove_spectral_norm, remove_weight_norm
    from torch.nn.utils.weight_norm import WeightNorm

    for module, hook in _weight_hooks(model):
        (remove_weight_norm if isinstance(hook, WeightNorm) else remove_spectral_norm)(module, hook.name)
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            parametrizations: nn.ModuleDict = getattr(module, "parametrizations")  # noqa: B009 - typed for mypy
            parametrizations.eval()  # spectral_norm's power iteration runs in training mode only
            with torch.no_grad():
                for name in list(parametrizations):
                    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model


def _copy(model: nn.Module) -> nn.Module:
    """``copy.deepcopy(model)``, also of a model with hook-computed weights (their values detached for the copy)."""
    computed = [(m, hook.name, getattr(m, hook.name)) for m, hook in _weight_hooks(model)]
    try:
        for m, name, weight in computed:
            setattr(m, name, weight.detach())
        return copy.deepcopy(model)
    finally:
        for m, name, weight in computed:
            setattr(m, name, weight)


def convert(model: nn.Module, plan: Plan | None = None, options: ConvertOptions | None = None) -> nn.Module:
    """A deep copy of ``model`` with every layer the plan marks ``weights``/``binary``/``int8`` swapped.

    Without a plan, the default :func:`bnnc.plan` (input shape probed from the first layer).

    ``weights`` layers keep a real-valued input; ``binary`` layers get an input binarizer whose
    thresholds start at 0 and ``int8`` layers have no input range yet (call :func:`bnnc.calibrate_thresholds`
    with real inputs afterwards).
    """
    plan = plan or make_plan(model)
    options = options or ConvertOptions()
    new = plain_weights(_copy(model))
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
            binary = counterpart.from_float(module)  # type: ignore[union-attr]
        else:
            binary = counterpart.from_float(  # type: ignore[union-attr]
                module, binary_input=layer.precision is Precision.BINARY, scale=options.scale,
                threshold=options.threshold, stochastic=options.stochastic,
            )
        binary.train(module.training)
        set_submodule(new, layer.name, binary)
    if options.shift_bn:
        use_shift_batchnorm(new)
    return new
