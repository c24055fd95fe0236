"""Loading a model file of any accepted form, safely: the first step of every command.

(a) a bnnc checkpoint (:mod:`bnnc.checkpoint`) or any dict naming its ``arch``; (b) a plain state
dict plus ``--arch`` (:mod:`bnnc.arch`); (c) a ``torch.export`` program (:mod:`bnnc.program`);
(d) a whole pickled ``nn.Module``, only when the user trusts the file. What a file is, is found out
before anything is unpickled (:mod:`bnnc.formats`). A converted checkpoint comes back as its
binarized model: the FP32 architecture rebuilt, then swapped by its recorded plan (:mod:`bnnc.swap`).
"""

from __future__ import annotations

import inspect
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import is_lazy

from bnnc import program, seal
from bnnc.arch import CLASS_COUNT_NAMES, allowed, build_model, is_plain, resolve_arch
from bnnc.checkpoint import FORMAT, PROGRAM_FORM, BinarizedInfo, parse
from bnnc.errors import ModelLoadError, UntrustedModelError
from bnnc.formats import check_readable, file_sha256, refuse_other_formats, torch_load, zip_names
from bnnc.swap import convert, plain_weights
from bnnc.usercode import canonical

_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")


@dataclass
class ModelFile:
    """A loaded model and everything its file said about it."""

    model: nn.Module
    path: Path
    sha256: str
    form: str                                   # how it was stored, for messages
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    binarized: BinarizedInfo | None = None      # how a converted checkpoint was made
    example_shape: tuple[int, ...] | None = None  # per-sample input shape a torch.export program was made with
    arch_named_by_user: bool = True             # arch from --arch, or sealed by this user's bnnc (bnnc.seal)

    @property
    def is_binarized(self) -> bool:
        return self.binarized is not None

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """The per-sample input shape the file states: its preprocessing's, or its plan's if given
        (not guessed); data without recorded preprocessing is shaped so."""
        if self.preprocessing and self.preprocessing.get("input_shape"):
            return tuple(int(n) for n in self.preprocessing["input_shape"])
        if self.example_shape is not None:
            return self.example_shape
        if self.binarized is not None and not self.binarized.plan.input_shape_inferred:
            return self.binarized.plan.input_shape
        return None


def check_finite(state_dict: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse NaN/inf weights: binarizing them would silently produce a meaningless model."""
    for key, t in state_dict.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
            raise ModelLoadError(f"{path}: tensor {key!r} contains NaN or inf values",
                                 "the model diverged during training; use an earlier checkpoint")


def finish_lazy(model: nn.Module, state_dict: Mapping[str, Any]) -> None:
    """Give the lazy modules of a freshly built ``model`` (``nn.LazyLinear``, ``LazyConv2d``, ``LazyBatchNorm2d``)
    the shapes of their weights in ``state_dict`` and make them the plain modules they become at their first
    call (``in_features``, ``in_channels``, ``num_features`` set): bnnc reads those to plan and swap layers,
    before the model has run. A module the file has no weights for stays lazy."""
    for prefix, module in model.named_modules():
        if not isinstance(module, LazyModuleMixin):
            continue
        m: Any = module
        for name, t in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]:
            key = f"{prefix}.{name}" if prefix else name
            value = state_dict.get(key)
            if is_lazy(t) and isinstance(value, torch.Tensor):
                t.materialize(value.shape)
        became = m.cls_to_become
        if m.has_uninitialized_params() or became is None:
            continue
        if issubclass(became, nn.Linear):
            m.in_features = m.weight.shape[1]
        elif issubclass(became, nn.modules.conv._ConvNd):
            m.in_channels = m.weight.shape[0] if m.transposed else m.weight.shape[1] * m.groups
        elif issubclass(became, nn.modules.batchnorm._NormBase) and (m.running_mean is not None or m.affine):
            m.num_features = (m.running_mean if m.running_mean is not None else m.weight).shape[0]
        else:
            continue
        m._initialize_hook.remove()  # what torch does at the first call (LazyModuleMixin._infer_parameters)
        m._load_hook.remove()
        del m._initialize_hook, m._load_hook
        m.__class__ = became


def load_weights(model: nn.Module, state_dict: Mapping[str, Any], path: Path, ref: str | None) -> None:
    """``load_state_dict(strict=True)`` with a message that names what differs."""
    finish_lazy(model, state_dict)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and isinstance(state_dict[k], torch.Tensor) and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                parts.append(f"{label}: {', '.join(items[:4])}{', ...' if len(items) > 4 else ''}")
        raise ModelLoadError(f"the weights in {path} don't fit architecture {ref or '(pickled module)'}: "
                             + "; ".join(parts), _fit_hint(expected, state_dict, missing or unexpected, ref))
    check_finite(state_dict, path)
    model.load_state_dict(state_dict, strict=True)


def _fit_hint(expected: Mapping[str, torch.Tensor], state_dict: Mapping[str, Any], other: list[str],
              ref: str | None) -> str:
    """What to change when weights don't fit: the class count, when one layer's outputs are all that differ (a
    model trained for another number of classes than the architecture's default), else --arch/--arch-kwargs."""
    differ = {k: (tuple(state_dict[k].shape), tuple(v.shape)) for k, v in expected.items()
              if isinstance(state_dict.get(k), torch.Tensor) and state_dict[k].shape != v.shape}
    layers = {k.rpartition(".")[0] for k in differ}
    if not other and len(layers) == 1 and all(len(a) == len(b) and a[1:] == b[1:] for a, b in differ.values()):
        (got, want), = {(a[0], b[0]) for a, b in differ.values()}
        return (f"the file's {layers.pop()} has {got} outputs, the architecture's {want}: pass the class count, "
                f"--arch-kwargs '{{\"{_class_count_name(ref)}\": {got}}}'")
    return "check --arch and --arch-kwargs"


def _class_count_name(ref: str | None) -> str:
    """The factory's parameter for its number of classes, by the usual names (``num_classes`` if none is there)."""
    try:
        params = inspect.signature(resolve_arch(ref)).parameters if ref else {}
    except Exception:  # noqa: BLE001 - only a hint: an unreadable signature falls back to the usual name
        params = {}
    return next((n for n in CLASS_COUNT_NAMES if n in params), "num_classes")


def wrapper_prefixes(expected: Iterable[str], state_dict: Mapping[str, Any]) -> list[str]:
    """The prefixes under which ``state_dict`` holds exactly the model's keys, when they don't match as
    they are: ``module.`` of a model saved from DataParallel/DDP, ``model.`` of one saved from the Lightning
    module (or any wrapper) holding it; keys outside the prefix (a loss's buffers, say) are not the
    model's. None when the keys match as they are; more than one (``model.`` and ``ema.``) is ambiguous."""
    want = set(expected)
    if not want or want == state_dict.keys():
        return []
    counts = Counter(k[:i + 1] for k in state_dict for i, c in enumerate(k) if c == ".")
    return sorted(p for p, n in counts.items()
                  if n == len(want) and {k[len(p):] for k in state_dict if k.startswith(p)} == want)


def _unwrapped(model: nn.Module, state_dict: Mapping[str, Any], path: Path,
               arch: str | None) -> tuple[Mapping[str, Any], str]:
    """``state_dict`` with the prefix of a wrapper it was saved from taken off (DataParallel/DDP's ``module.``, a
    Lightning module's own attribute), and that prefix ("" if none)."""
    prefixes = wrapper_prefixes(model.state_dict().keys(), state_dict)
    if len(prefixes) > 1:
        raise ModelLoadError(f"{path} holds the weights of {arch} under each of {', '.join(map(repr, prefixes))}",
                             "save the one you mean as a plain state dict, e.g. torch.save(wrapper.model.state_dict())")
    if not prefixes:
        return state_dict, ""
    prefix = prefixes[0]
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}, prefix


def _module_in(obj: Any, path: Path) -> tuple[str | None, nn.Module | None]:
    """A whole module a (trusted) training checkpoint holds beside other things — ``{'model': model, 'epoch': 3}``,
    YOLOv5's ``{'model': ..., 'ema': ...}``: the one under ``model``, else the only one."""
    if not isinstance(obj, Mapping):
        return None, None
    modules = {str(k): v for k, v in obj.items() if isinstance(v, nn.Module)}
    if "model" in modules or len(modules) == 1:
        key = "model" if "model" in modules else next(iter(modules))
        return key, modules[key]
    if modules:
        raise ModelLoadError(f"{path} holds a module under each of {', '.join(map(repr, sorted(modules)))}",
                             f"save the one you mean, e.g. torch.save(ckpt[{min(modules)!r}], 'model.pt')")
    return None, None


def _nested_state_dict(obj: Mapping[str, Any], path: Path) -> Mapping[str, Any] | None:
    """The state dict in a training checkpoint: the file itself, under a usual key (``state_dict``,
    ``model_state_dict``, ``model``), else the one dict of tensors it holds under any key (``net``, ``weights``)."""
    if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return obj
    found = {key: inner for key, inner in obj.items()
             if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values())}
    for key in _STATE_DICT_KEYS:
        if key in found:
            return found[key]
    if len(found) > 1:
        raise ModelLoadError(f"{path} holds a dict of weights under each of {', '.join(map(repr, sorted(found)))}",
                             f"save the one you mean as a plain state dict, e.g. torch.save(ckpt[{min(found)!r}], "
                             "'model.pt')")
    return next(iter(found.values()), None)


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    trust_model: bool = False,
    recorded_arch: tuple[str, Mapping[str, Any], bool] | None = None,
    allow_arch: str | None = None,
) -> ModelFile:
    """Load a model file in any accepted form (see the README's "Model files").

    (a) a bnnc checkpoint or any dict naming its ``arch``; (b) a plain state dict with ``arch``;
    (c) a whole pickled ``nn.Module``, only with ``trust_model=True``. A converted (binarized)
    bnnc checkpoint comes back as the binarized model. ``arch`` overrides the file's reference.
    ``recorded_arch`` (reference, kwargs, named by the user) builds the model when ``arch`` isn't given,
    over any ``arch`` the file names itself: the architecture a converted checkpoint recorded for its FP32 source (see
    :func:`resolve_arch` for when a recorded function may be called). ``allow_arch``: a factory the
    user named for this command (``--arch``), which the file's own reference may then call.
    """
    path = Path(path)
    arch = canonical(arch) if arch else arch  # a file's path is recorded absolute: later steps run from anywhere
    check_readable(path)
    refuse_other_formats(path)
    sha = file_sha256(path)
    names = zip_names(path)
    if program.is_program(names):
        if arch is not None:
            raise ModelLoadError(f"{path} is a torch.export program: it carries its own graph", "drop --arch")
        program.check_archive(path, names, trust_model)
        model, shape = program.load_program(path)
        check_finite(model.state_dict(), path)
        return ModelFile(model=model, path=path, sha256=sha, form=PROGRAM_FORM, example_shape=shape)
    obj = torch_load(path, trust_model)

    key, module = (None, obj) if isinstance(obj, nn.Module) else _module_in(obj, path)
    if module is not None:
        if arch is not None:
            raise ModelLoadError(f"{path} holds a whole pickled module; --arch applies to state dicts",
                                 "drop --arch")
        check_finite(module.state_dict(), path)
        module = module.cpu()
        if any(p.dtype in (torch.float16, torch.bfloat16) for p in module.parameters()):
            module = module.float()  # saved in half precision (YOLOv5's checkpoints): bnnc computes in float32
        return ModelFile(model=plain_weights(module), path=path, sha256=sha,
                         form="pickled nn.Module" + (f" under {key!r}" if key else "") + " (trusted)")
    if not isinstance(obj, Mapping):
        raise ModelLoadError(f"{path} holds a {type(obj).__name__}, not a model checkpoint",
                             "save a state dict, a bnnc checkpoint, or (trusted) a whole nn.Module")

    named_by_user = arch is not None
    if arch is None and recorded_arch is not None:  # as convert built it, whatever `arch` the file names itself
        arch, arch_kwargs, named_by_user = recorded_arch
        named_by_user = named_by_user or allowed(arch, allow_arch)
    if "arch" in obj or obj.get("format") == FORMAT:
        return _load_described(path, sha, obj, arch, arch_kwargs, named_by_user, trust_model, allow_arch)

    state_dict = _nested_state_dict(obj, path)
    if state_dict is None:
        raise ModelLoadError(f"{path} is a dict with keys {sorted(map(str, obj))[:6]} but no state dict in it",
                             "save model.state_dict(), or a dict with 'arch' and 'state_dict'")
    if arch is None:
        raise ModelLoadError(f"{path} is a plain state dict: it holds weights but not the architecture",
                             "pass --arch pkg.module:factory (the class or function that builds the model)")
    model = build_model(arch, arch_kwargs, named_by_user=named_by_user, source=path, weights=state_dict)
    state_dict, prefix = _unwrapped(model, state_dict, path, arch)
    load_weights(model, state_dict, path, arch)
    return ModelFile(model=plain_weights(model), path=path, sha256=sha,
                     form="state dict + --arch" + (f" (keys under {prefix!r})" if prefix else ""),
                     arch=arch, arch_kwargs=dict(arch_kwargs or {}), arch_named_by_user=named_by_user)


def _load_described(
    path: Path, sha: str, obj: Mapping[str, Any], arch: str | None,
    arch_kwargs: Mapping[str, Any] | None, arch_named_by_user: bool, trust_model: bool, allow_arch: str | None,
) -> ModelFile:
    checkpoint = parse(obj, path)
    ref = arch or checkpoint.arch
    kwargs = dict(arch_kwargs if arch_kwargs is not None else checkpoint.arch_kwargs)
    binarized = checkpoint.binarized
    if ref is None and binarized is None:
        raise ModelLoadError(f"{path} has an empty architecture reference", "pass --arch pkg.module:factory")
    if not is_plain(kwargs):
        raise ModelLoadError(f"{path}: 'arch_kwargs' holds values other than plain data", "fix the checkpoint")
    named_by_user = arch_named_by_user if arch is not None else (ref is not None and (
        allowed(ref, allow_arch) or seal.verify(ref, kwargs, checkpoint.arch_seal)))
    if ref is not None:
        model = build_model(ref, kwargs, named_by_user=named_by_user, source=path)
    else:
        model = _load_source(path, binarized, trust_model)  # type: ignore[arg-type]
    if binarized is not None:
        finish_lazy(model, checkpoint.state_dict)  # the layers to swap need their shapes
        model = convert(model, binarized.plan, binarized.options)
    state_dict, _ = _unwrapped(model, checkpoint.state_dict, path, ref)  # the ImageNet example's `module.` keys
    load_weights(model, state_dict, path, ref)
    plain_weights(model)
    return ModelFile(model=model, path=path, sha256=sha,
                     form="bnnc checkpoint (binarized)" if binarized is not None else "bnnc checkpoint",
                     arch=ref, arch_kwargs=kwargs, preprocessing=checkpoint.preprocessing,
                     metrics=dict(checkpoint.metrics), binarized=binarized, arch_named_by_user=named_by_user)


def _load_source(path: Path, binarized: BinarizedInfo, trust_model: bool) -> nn.Module:
    """A model converted from a file with no ``arch`` reference is rebuilt from that source file:
    a torch.export program (checked as always), or a pickled module (trusted only)."""
    recorded = Path(binarized.source.path if binarized.source else "")
    from_program = binarized.source is not None and binarized.source.form == PROGRAM_FORM
    if not trust_model and not from_program:
        raise UntrustedModelError(
            f"{path} was converted from a pickled nn.Module ({recorded}); rebuilding it loads that file, "
            "which runs code from it", "pass --trust-model only if you trust its author")
    src, same = locate_source(path, binarized)
    if src is None:
        raise ModelLoadError(f"{path} was converted from {recorded}, which is no longer there",
                             "put the source model back, or convert from a state dict with --arch")
    if not same:
        raise ModelLoadError(f"{src} changed since {path} was converted from it",
                             "re-run bnnc convert on the current source model")
    return load_checkpoint(src, trust_model=trust_model).model


def locate_source(path: Path, binarized: BinarizedInfo) -> tuple[Path | None, bool]:
    """The FP32 file a converted checkpoint was made from, and whether its SHA-256 still matches.

    Looked for at its recorded path, then beside the checkpoint (files moved together).
    """
    source = binarized.source
    recorded = Path(source.path if source else "")
    if source is None or not recorded.name:
        return None, False
    found = next((p for p in (recorded, path.parent / recorded.name) if p.is_file()), None)
    return found, found is not None and file_sha256(found) == source.sha256


def load_model(
    path: str | os.PathLike[str],
    *,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    trust_model: bool = False,
) -> nn.Module:
    """The model in ``path`` (binarized if it is a converted bnnc checkpoint); see :func:`load_checkpoint`."""
    return load_checkpoint(path, arch=arch, arch_kwargs=arch_kwargs, trust_model=trust_model).model

