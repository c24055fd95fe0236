"""What every step resolves from its inputs, done one way: the kind of model a command needs, the
FP32 source of a converted checkpoint, data shaped and checked for the model, calibration batches.

The FP32 source is rebuilt the way ``bnnc convert`` built it — the recorded ``arch``/``arch_kwargs``
for a plain state dict, the recorded ``.pt2`` program, or a trusted pickled module — found at its
recorded path or beside the checkpoint and checked by SHA-256, with the same safety rules as any
model file. Data meet the model here: the model's stated input shape, else the data's own sample
shape if the model takes it, else the same values flattened (an MLP on images); labels must be
classes the model can output.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnnc.data import (
    DataSpec,
    DataSplits,
    Normalisation,
    Preprocessing,
    check_labels,
    load_data,
    reads_images,
    reshaped,
)
from bnnc.errors import BnncError, DataError, ModelLoadError
from bnnc.loading import ModelFile, load_checkpoint, locate_source
from bnnc.tracing import image_shape_for, input_shape_for, is_swapped, refuse_token_input


def require_binarized(loaded: ModelFile) -> ModelFile:
    """``loaded`` if it is a converted checkpoint; the steps after ``convert`` need one."""
    if not loaded.is_binarized:
        raise BnncError(f"{loaded.path} is an FP32 model, not a binarized one",
                        f"run `bnnc convert {loaded.path}` first")
    return loaded


def require_fp32(loaded: ModelFile) -> ModelFile:
    """``loaded`` if it is an FP32 model; converting a converted checkpoint again is a mistake."""
    if loaded.is_binarized:
        raise BnncError(f"{loaded.path} is already binarized", "pass the FP32 model it was converted from")
    return loaded


def stated_input_shape(loaded: ModelFile, input_shape: Sequence[int] | None) -> tuple[int, ...] | None:
    """The per-sample input shape: ``input_shape`` (``--input-shape``) or the one the file states;
    the two must agree, since the recorded one is what the model was trained on."""
    recorded = loaded.input_shape
    if input_shape is None:
        return recorded
    shape = tuple(int(n) for n in input_shape)
    if recorded is not None and shape != recorded:
        raise BnncError(f"--input-shape {','.join(map(str, shape))} conflicts with the input shape "
                        f"{','.join(map(str, recorded))} recorded in {loaded.path}",
                        "drop --input-shape: the recorded shape is the one the model was trained with")
    return shape


def load_fp32_source(
    loaded: ModelFile,
    path: str | os.PathLike[str] | None = None,
    *,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    trust_model: bool = False,
    role: str = "the FP32 baseline",
    flag: str = "--fp32",
    alternative: str = "",
) -> ModelFile:
    """The FP32 model the converted checkpoint ``loaded`` was made from (or ``path``), rebuilt as convert did.

    ``path`` is loaded as any model file; a plain state dict there takes ``arch`` or else the
    architecture the checkpoint recorded. Without ``path`` the recorded source is looked for at its
    path and beside the checkpoint, and must still have its recorded SHA-256. ``role``, ``flag`` and
    ``alternative`` word the errors for the command that needs it (e.g. the teacher, ``--teacher``).
    """
    recorded_arch = (loaded.arch, loaded.arch_kwargs, loaded.arch_named_by_user) if loaded.arch else None
    if path is None:
        binarized = loaded.binarized
        recorded = binarized.source.path if binarized is not None and binarized.source else None
        found, same = locate_source(loaded.path, binarized) if binarized is not None else (None, False)
        if found is None:
            raise ModelLoadError(f"{loaded.path} was converted from {recorded}, which is not there ({role})",
                                 f"put it back, or pass {flag} PATH{alternative}")
        if not same:
            raise ModelLoadError(f"{found} changed since {loaded.path} was converted from it ({role})",
                                 f"pass {flag} PATH to use it anyway{alternative}")
        path = found
    source = load_checkpoint(path, arch=arch, arch_kwargs=arch_kwargs if arch else None, trust_model=trust_model,
                             recorded_arch=recorded_arch)
    if source.is_binarized:
        raise ModelLoadError(f"{source.path} is a binarized checkpoint, not an FP32 model ({role})",
                             f"pass the FP32 model with {flag}")
    return source


def load_teacher(loaded: ModelFile, teacher: str | os.PathLike[str] | None, trust_model: bool, *,
                 arch: str | None = None, arch_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """The FP32 model the checkpoint was converted from (or ``teacher``), rebuilt as convert did."""
    return load_fp32_source(loaded, teacher, arch=arch, arch_kwargs=arch_kwargs, trust_model=trust_model,
                            role="the distillation teacher", flag="--teacher", alternative=", or --no-distill").model


def data_for_model(spec: DataSpec, loaded: ModelFile, *, input_shape: Sequence[int] | None = None,
                   normalisation: Normalisation | None = None) -> DataSplits:
    """``spec`` loaded for ``loaded``'s model: normalised by its recorded preprocessing (else with
    ``normalisation``, else the data's own statistics), shaped for its input, labels within its
    outputs. ``input_shape`` overrides the file's stated shape (see :func:`stated_input_shape`).
    Without either, the data's own sample shape is tried on the model, then the same values
    flattened; a shape the model doesn't take is one error naming both."""
    recorded = loaded.preprocessing
    if recorded:
        splits = load_data(spec, preprocessing=Preprocessing.from_dict(recorded), normalisation=normalisation)
    else:
        stated = tuple(input_shape) if input_shape is not None else loaded.input_shape
        splits = load_data(spec, input_shape=stated, normalisation=normalisation)
        if stated is None:
            refuse_token_input(loaded.model)
            splits = _fit_shape(spec, splits, loaded.model, normalisation)
    outputs = output_size(loaded.model, splits.preprocessing.input_shape, loaded.path)
    if outputs is not None:
        check_labels(splits, outputs)
    return splits


def guess_warning(splits: DataSplits, fix: str = "pass that with --mean/--std") -> str:
    """What to say when the data's own statistics stand in for a normalisation the model doesn't record."""
    pre = splits.preprocessing
    if pre.pixel_scale == 1.0 and set(pre.mean) == {0.0} and set(pre.std) == {1.0}:
        used = "the data's floats are fed to the model as they are"
    else:
        used = (f"the data is normalised with its own mean {','.join(f'{v:.4g}' for v in pre.mean)} and std "
                f"{','.join(f'{v:.4g}' for v in pre.std)}")
    return (f"the model records no input normalisation, so {used}; if it was trained with another (torchvision's "
            f"Normalize, say), {fix}")


def _fit_shape(spec: DataSpec, splits: DataSplits, model: nn.Module,
               normalisation: Normalisation | None) -> DataSplits:
    """Data of the data's own shape, reshaped to the shape the model takes (see :func:`input_shape_for`)."""
    natural = splits.preprocessing.input_shape
    shape = input_shape_for(model, natural)
    if shape is None and isinstance(spec, (str, os.PathLike)) and reads_images(Path(spec)):
        image_shape = image_shape_for(model, natural)
        if image_shape is not None:  # images convert and resize as they load
            return load_data(spec, input_shape=image_shape, normalisation=normalisation)
    if shape is None:
        raise DataError(f"{splits.source}: the model doesn't run on samples of shape {natural}, "
                        f"nor on them flattened to ({math.prod(natural)},)",
                        "check that the data belongs to this model, or pass --input-shape")
    if shape == natural:
        return splits
    if is_swapped(natural, shape):
        if isinstance(spec, DataSplits):
            raise DataError(f"{splits.source}: samples of shape {natural[1:]} are channels-last for a model that "
                            f"takes {shape}", "give the data as a file, or as samples of the model's shape")
        return load_data(spec, input_shape=shape, normalisation=normalisation)  # read again: swapped as they load
    if isinstance(spec, DataSplits) or len(set(splits.preprocessing.mean)) == 1:
        return reshaped(splits, shape)
    return load_data(spec, input_shape=shape, normalisation=normalisation)  # normalised again, for that shape


@torch.no_grad()
def output_size(model: nn.Module, input_shape: Sequence[int],
                where: str | os.PathLike[str] = "the model") -> int | None:
    """The number of logits ``model`` gives per sample (None if it doesn't run on that shape: said where the
    data is used). Everything bnnc does (the loss, accuracy, parity) reads ``(N, classes)`` logits, so a
    tuple, a dict or another shape is one error here, not a crash later."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():  # its grad_fn says what computed the output
            out = model(torch.zeros(2, *input_shape, device=device))
    except Exception:  # noqa: BLE001 - a shape problem is reported where the data is used
        return None
    finally:
        model.train(was_training)
    hint = "wrap it so forward(x) returns the logits alone, e.g. `return self.model(x)[0]`"
    if not isinstance(out, torch.Tensor):
        raise ModelLoadError(f"{where}: the model returns a {type(out).__name__}, not a tensor of logits", hint)
    if out.dim() != 2:
        if out.dim() == 1 and len(out) == 2:
            hint = ("a binary classifier's one logit a sample: keep it as a column, e.g. drop the .squeeze() or "
                    ".view(-1) at the end of forward (class 1 where the logit is > 0)")
        elif out.dim() > 2 and out.shape[2:].numel() == 1:
            hint = "a convolutional head's (N, classes, 1, 1): flatten it at the end of forward, torch.flatten(x, 1)"
        raise ModelLoadError(f"{where}: the model returns shape {tuple(out.shape)} for 2 samples; bnnc needs "
                             "(N, classes) logits", hint)
    if out.shape[1] == 1 and type(out.grad_fn).__name__ == "SigmoidBackward0":
        raise ModelLoadError(f"{where}: the model's one output is a sigmoid (a probability); bnnc reads one output "
                             "as a logit (class 1 where it is > 0)",
                             "return the logit: drop the final sigmoid (train with BCEWithLogitsLoss); the weights "
                             "load as they are")
    return int(out.shape[1])
