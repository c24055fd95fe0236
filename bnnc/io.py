"""Loading models safely, and bnnc's checkpoint format.

A bnnc checkpoint is a plain dict saved with ``torch.save`` that reloads with
``torch.load(weights_only=True)`` — no pickled code::

    {"format": "bnnc-model", "format_version": 1,
     "arch": "pkg.module:factory", "arch_kwargs": {...},   # how to rebuild the FP32 module
     "arch_seal": "..." | None,                             # bnnc.seal: this user's bnnc wrote "arch"
     "state_dict": {...},                                   # weights (converted ones if binarized)
     "preprocessing": {...} | None,                         # see bnnc.data.Preprocessing
     "metrics": {...},                                      # e.g. test accuracy
     "binarized": None | {"plan": ..., "options": ..., "source": {"path", "sha256"},
                          "calibration": {...}, "bnnc_version": "..."}}

Loading never runs code from the file: everything is read with ``weights_only=True``; a whole
pickled ``nn.Module`` is refused unless the caller passes ``trust_model=True``. The ``arch``
reference imports code that is already installed on the machine, never code from the file: an
``nn.Module`` subclass, or a function only if the user named it (``--arch``) or sealed it
(:mod:`bnnc.seal`), and never anything in the standard library, torch or bnnc's own modules — so a
tampered reference can't call ``os:system``, ``sympy:sympify`` or ``bnnc.io:load_model``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import os
import pickle
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from bnnc import program, seal
from bnnc.errors import ModelLoadError, OutputError, UntrustedModelError

PROGRAM_FORM = "torch.export program"
FORMAT = "bnnc-model"
FORMAT_VERSION = 1
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
_REFUSED_TOP_LEVEL = {"torch", "builtins", "__main__"} | set(sys.stdlib_module_names)


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
    binarized: dict[str, Any] | None = None     # the "binarized" entry of a converted checkpoint
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
        plan = (self.binarized or {}).get("plan") or {}
        if plan.get("input_shape") and not plan.get("input_shape_inferred", True):
            return tuple(int(n) for n in plan["input_shape"])
        return None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- reading files


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file", "check the path")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a directory, not a model file", "pass the checkpoint file inside it")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path} is empty", "the file was not written completely; save the model again")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise ModelLoadError(f"{path} can't be read: {e.strerror}", "check its permissions") from None


def _zip_names(path: Path) -> list[str]:
    if not zipfile.is_zipfile(path):
        return []
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


MAX_PICKLE_BYTES = 256 << 20
"""The largest pickle (``data.pkl``) or compressed entry bnnc unpacks from a torch archive: a state dict's
pickle is kilobytes (the tensors are separate, uncompressed entries), so a bigger one is a zip bomb."""


def archive_problem(path: Path) -> str | None:
    """Why the torch zip archive at ``path`` must not be read (an oversized pickle or compressed entry), or None."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                pickled = info.filename.endswith(".pkl")
                if (pickled or info.compress_type != zipfile.ZIP_STORED) and info.file_size > MAX_PICKLE_BYTES:
                    return (f"its entry {info.filename} unpacks to {info.file_size / 2**30:.1f} GiB "
                            f"({info.compress_size:,} bytes stored)")
    except (zipfile.BadZipFile, OSError):
        return None
    return None


def _looks_like_onnx(path: Path) -> bool:
    """An ONNX ModelProto starts with field 1 (ir_version, a varint: byte 0x08) and parses."""
    if path.suffix.lower() == ".onnx":
        return True
    with open(path, "rb") as f:
        if f.read(1) != b"\x08":
            return False
    try:
        import onnx

        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not ONNX after all
        return False
    return proto.ir_version > 0 and len(proto.graph.node) > 0


def _refuse_other_formats(path: Path) -> None:
    names = _zip_names(path)
    if any("/code/" in n or n.endswith("constants.pkl") for n in names):
        raise ModelLoadError(
            f"{path} is a TorchScript archive; bnnc needs the eager PyTorch model",
            "save model.state_dict() (before torch.jit.script/trace) and pass --arch pkg.module:factory",
        )
    if not names and _looks_like_onnx(path):
        raise ModelLoadError(
            f"{path} is an ONNX model; bnnc converts PyTorch models",
            "pass the PyTorch checkpoint the ONNX file was exported from",
        )


def _torch_load(path: Path, trust_model: bool) -> Any:
    if (problem := archive_problem(path)) is not None:
        raise ModelLoadError(f"{path} is not a checkpoint bnnc will unpack: {problem}",
                             "save the model with torch.save(model.state_dict(), path)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "unsupported global" not in str(e).lower():  # not pickled objects: a corrupt file
            raise ModelLoadError(f"{path} is not a readable PyTorch checkpoint ({_first_line(e)})",
                                 "check that it was written by torch.save and copied completely") from None
        if not trust_model:
            raise UntrustedModelError(
                f"{path} contains pickled Python objects (e.g. a whole nn.Module); "
                "loading it would run code from the file",
                "pass --trust-model only if you trust its author, or save model.state_dict() "
                "and pass --arch pkg.module:factory",
            ) from None
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for corrupt files
        raise ModelLoadError(f"{path} is not a readable PyTorch checkpoint ({_first_line(e)})",
                             "check that it was written by torch.save and copied completely") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"{path} could not be unpickled even as a trusted file ({_first_line(e)})",
                             "the classes it pickled must be importable here") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


# ----------------------------------------------------------------------------- architectures


@contextlib.contextmanager
def _cwd_on_path() -> Iterator[None]:
    """Let ``--arch mymodels:Net`` import ``mymodels.py`` from the working directory, as python -m does."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def resolve_arch(ref: str, *, named_by_user: bool = True, source: Path | None = None) -> Callable[..., Any]:
    """Import ``pkg.module:factory`` (factory may be ``Class`` or ``obj.attr``) and check it is safe.

    An ``nn.Module`` subclass is accepted wherever the reference comes from; a function only when the
    user named it (``--arch``, the ``arch=`` argument) or ``source``, the file that names it, carries
    this user's seal (:mod:`bnnc.seal`). Nothing from the standard library, torch, or bnnc itself
    (but its sample architectures, :mod:`bnnc.zoo`) is accepted at all.
    """
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ModelLoadError(f"architecture reference {ref!r} is not of the form pkg.module:factory",
                             "e.g. --arch torchvision.models:resnet18 or --arch mymodels:Net")
    if not_user_code(module_name):
        raise ModelLoadError(f"architecture reference {ref!r} points into {module_name.split('.')[0]!r}, "
                             "which can't define a model architecture", "name the module that defines your model")
    try:
        with _cwd_on_path():
            obj: Any = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - the user's module can raise anything on import
        raise ModelLoadError(f"can't import {module_name!r} for architecture {ref!r} ({_first_line(e)})",
                             "install the package that defines the model, or run bnnc from its folder") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelLoadError(f"{module_name!r} has no attribute {attr!r} (architecture {ref!r})",
                                 "check the spelling of the factory or class name")
        obj = getattr(obj, part)
    is_module_class = inspect.isclass(obj) and issubclass(obj, nn.Module)
    is_function = inspect.isfunction(obj) or inspect.ismethod(obj)
    if not (is_module_class or is_function):
        raise ModelLoadError(f"architecture {ref!r} is a {type(obj).__name__}, not an nn.Module class or a function",
                             "point --arch at the class or the function that builds the model")
    defined_in = getattr(obj, "__module__", "") or ""
    if not_user_code(defined_in):
        raise ModelLoadError(f"architecture {ref!r} is defined in {defined_in!r}, not in a model package",
                             "name the module that defines your model")
    if is_function and not named_by_user:
        raise UntrustedModelError(
            f"{source} names the function {ref!r} as its architecture; bnnc calls a function named by a file "
            "only if this user's bnnc recorded it there (a file from elsewhere could name any function)",
            f"if you trust it to build the model, pass --arch {ref} or set BNNC_ALLOW_ARCH={ref}")
    return obj


def not_user_code(name: str) -> bool:
    """Whether module ``name`` is one a reference from outside may never name as code to call: the standard
    library, torch, ``__main__``, bnnc's own modules (but its sample architectures, ``bnnc.zoo``)."""
    top = name.split(".")[0]
    return top in _REFUSED_TOP_LEVEL or (top == "bnnc" and name != "bnnc.zoo")


def _allowed(ref: str, allow_arch: str | None) -> bool:
    """Whether the user allowed the function ``ref`` for this command: ``--arch`` or ``BNNC_ALLOW_ARCH``."""
    return ref == allow_arch or seal.allowed(ref)


def build_model(ref: str, kwargs: Mapping[str, Any] | None = None, *, named_by_user: bool = True,
                source: Path | None = None) -> nn.Module:
    """Instantiate the architecture ``ref`` with ``kwargs`` (JSON-like values only); see :func:`resolve_arch`."""
    factory = resolve_arch(ref, named_by_user=named_by_user, source=source)
    kwargs = dict(kwargs or {})
    for key, value in kwargs.items():
        if not _is_plain(value):
            raise ModelLoadError(f"argument {key!r} for architecture {ref!r} is a {type(value).__name__}",
                                 "architecture arguments must be numbers, strings, booleans, lists or dicts")
    try:
        model = factory(**kwargs)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"building architecture {ref!r} with {kwargs} failed ({_first_line(e)})",
                             "check the architecture's arguments (--arch-kwargs)") from None
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"architecture {ref!r} returned a {type(model).__name__}, not an nn.Module",
                             "point --arch at a function that returns the model")
    return model


def _is_plain(v: Any) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, (list, tuple)):
        return all(_is_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _is_plain(x) for k, x in v.items())
    return False


def check_finite(state_dict: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse NaN/inf weights: binarizing them would silently produce a meaningless model."""
    for key, t in state_dict.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
            raise ModelLoadError(f"{path}: tensor {key!r} contains NaN or inf values",
                                 "the model diverged during training; use an earlier checkpoint")


def load_weights(model: nn.Module, state_dict: Mapping[str, Any], path: Path, ref: str | None) -> None:
    """``load_state_dict(strict=True)`` with a message that names what differs."""
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
                             + "; ".join(parts), "check --arch and --arch-kwargs")
    check_finite(state_dict, path)
    model.load_state_dict(state_dict, strict=True)


def _nested_state_dict(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return obj
    for key in _STATE_DICT_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner
    return None


# ----------------------------------------------------------------------------- public loading


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
    ``recorded_arch`` (reference, kwargs, named by the user) builds a plain state dict when ``arch``
    isn't given: the architecture a converted checkpoint recorded for its FP32 source (see
    :func:`resolve_arch` for when a recorded function may be called). ``allow_arch``: a factory the
    user named for this command (``--arch``), which the file's own reference may then call.
    """
    path = Path(path)
    _check_readable(path)
    _refuse_other_formats(path)
    sha = file_sha256(path)
    names = _zip_names(path)
    if program.is_program(names):
        if arch is not None:
            raise ModelLoadError(f"{path} is a torch.export program: it carries its own graph", "drop --arch")
        program.check_archive(path, names, trust_model)
        model, shape = program.load_program(path)
        check_finite(model.state_dict(), path)
        return ModelFile(model=model, path=path, sha256=sha, form=PROGRAM_FORM, example_shape=shape)
    obj = _torch_load(path, trust_model)

    if isinstance(obj, nn.Module):
        if arch is not None:
            raise ModelLoadError(f"{path} holds a whole pickled module; --arch applies to state dicts",
                                 "drop --arch")
        check_finite(obj.state_dict(), path)
        return ModelFile(model=obj.cpu(), path=path, sha256=sha, form="pickled nn.Module (trusted)")
    if not isinstance(obj, Mapping):
        raise ModelLoadError(f"{path} holds a {type(obj).__name__}, not a model checkpoint",
                             "save a state dict, a bnnc checkpoint, or (trusted) a whole nn.Module")

    if "arch" in obj or obj.get("format") == FORMAT:
        return _load_described(path, sha, obj, arch, arch_kwargs, trust_model, allow_arch)

    state_dict = _nested_state_dict(obj)
    if state_dict is None:
        raise ModelLoadError(f"{path} is a dict with keys {sorted(map(str, obj))[:6]} but no state dict in it",
                             "save model.state_dict(), or a dict with 'arch' and 'state_dict'")
    named_by_user = True
    if arch is None and recorded_arch is not None:
        arch, arch_kwargs, named_by_user = recorded_arch
        named_by_user = named_by_user or _allowed(arch, allow_arch)
    if arch is None:
        raise ModelLoadError(f"{path} is a plain state dict: it holds weights but not the architecture",
                             "pass --arch pkg.module:factory (the class or function that builds the model)")
    model = build_model(arch, arch_kwargs, named_by_user=named_by_user, source=path)
    load_weights(model, state_dict, path, arch)
    return ModelFile(model=model, path=path, sha256=sha, form="state dict + --arch",
                     arch=arch, arch_kwargs=dict(arch_kwargs or {}), arch_named_by_user=named_by_user)


def _load_described(
    path: Path, sha: str, obj: Mapping[str, Any], arch: str | None,
    arch_kwargs: Mapping[str, Any] | None, trust_model: bool, allow_arch: str | None,
) -> ModelFile:
    version = obj.get("format_version", FORMAT_VERSION)
    if obj.get("format") == FORMAT and version != FORMAT_VERSION:
        raise ModelLoadError(f"{path} is a bnnc checkpoint of format version {version}; "
                             f"this bnnc reads version {FORMAT_VERSION}", "upgrade bnnc")
    state_dict = obj.get("state_dict")
    if not isinstance(state_dict, Mapping):
        raise ModelLoadError(f"{path} names an architecture but has no 'state_dict'",
                             "save {'arch': ..., 'arch_kwargs': ..., 'state_dict': model.state_dict()}")
    ref = arch or obj.get("arch")
    recorded_kwargs = obj.get("arch_kwargs") or {}
    if arch_kwargs is None and not isinstance(recorded_kwargs, Mapping):
        raise ModelLoadError(f"{path}: 'arch_kwargs' must be a dict", "fix the checkpoint")
    kwargs = dict(arch_kwargs if arch_kwargs is not None else recorded_kwargs)
    binarized = obj.get("binarized")
    if ref is None and binarized is None:
        raise ModelLoadError(f"{path} has an empty architecture reference", "pass --arch pkg.module:factory")
    if ref is not None and not isinstance(ref, str):
        raise ModelLoadError(f"{path}: 'arch' must be a string like 'pkg.module:factory'", "fix the checkpoint")
    if not _is_plain(kwargs):
        raise ModelLoadError(f"{path}: 'arch_kwargs' holds values other than plain data", "fix the checkpoint")
    named_by_user = arch is not None or (ref is not None and (
        _allowed(ref, allow_arch) or seal.verify(ref, kwargs, obj.get("arch_seal"))))
    preprocessing, metrics = obj.get("preprocessing"), obj.get("metrics") or {}
    _check_fields(path, preprocessing, metrics, binarized)
    metrics = dict(metrics)

    if binarized is None:
        model = build_model(ref, kwargs, named_by_user=named_by_user, source=path)  # type: ignore[arg-type]
        load_weights(model, state_dict, path, ref)
        return ModelFile(model=model, path=path, sha256=sha, form="bnnc checkpoint", arch=ref,
                         arch_kwargs=kwargs, preprocessing=preprocessing, metrics=metrics,
                         arch_named_by_user=named_by_user)

    from bnnc.conversion import ConvertOptions, convert
    from bnnc.planning import Plan

    if ref is not None:
        base = build_model(ref, kwargs, named_by_user=named_by_user, source=path)
    else:
        base = _load_source(path, binarized, trust_model)
    model = convert(base, Plan.from_dict(binarized["plan"]), ConvertOptions.from_dict(binarized["options"]))
    load_weights(model, state_dict, path, ref)
    return ModelFile(model=model, path=path, sha256=sha, form="bnnc checkpoint (binarized)", arch=ref,
                     arch_kwargs=kwargs, preprocessing=preprocessing, metrics=metrics, binarized=dict(binarized),
                     arch_named_by_user=named_by_user)


def _check_fields(path: Path, preprocessing: Any, metrics: Any, binarized: Any) -> None:
    """The checkpoint's entries have the types bnnc wrote: a tampered or foreign file is one clear error."""
    from bnnc.data import Preprocessing

    wrong = ("metrics" if not isinstance(metrics, Mapping)
             else "preprocessing" if preprocessing is not None and not isinstance(preprocessing, Mapping)
             else "binarized" if binarized is not None and not isinstance(binarized, Mapping)
             else next((f"binarized.{k}" for k in ("plan", "options") if binarized is not None
                        and not isinstance(binarized.get(k), Mapping)), None)
             or ("binarized.source" if binarized is not None and binarized.get("source") is not None
                 and not isinstance(binarized.get("source"), Mapping) else None))
    if wrong:
        raise ModelLoadError(f"{path}: the checkpoint's {wrong!r} entry is malformed", "re-run the bnnc step that wrote it")
    if preprocessing is None:
        return
    shape = preprocessing.get("input_shape")
    if shape is not None and not (isinstance(shape, (list, tuple)) and shape and all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        raise ModelLoadError(f"{path}: the recorded input shape {shape!r} is malformed", "re-run the bnnc step that wrote it")
    if {"mean", "std"} <= preprocessing.keys():  # a full preprocessing (else just the input shape)
        try:
            Preprocessing.from_dict(dict(preprocessing))
        except Exception as e:  # noqa: BLE001 - a DataError, or anything a tampered dict makes from_dict raise
            raise ModelLoadError(f"{path}: the recorded preprocessing is malformed ({_first_line(e)})",
                                 "re-run the bnnc step that wrote it") from None


def _load_source(path: Path, binarized: Mapping[str, Any], trust_model: bool) -> nn.Module:
    """A model converted from a file with no ``arch`` reference is rebuilt from that source file:
    a torch.export program (checked as always), or a pickled module (trusted only)."""
    recorded = Path(str((binarized.get("source") or {}).get("path", "")))
    from_program = (binarized.get("source") or {}).get("form") == PROGRAM_FORM
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


def locate_source(path: Path, binarized: Mapping[str, Any]) -> tuple[Path | None, bool]:
    """The FP32 file a converted checkpoint was made from, and whether its SHA-256 still matches.

    Looked for at its recorded path, then beside the checkpoint (files moved together).
    """
    source = binarized.get("source") or {}
    recorded = Path(str(source.get("path", "")))
    if not recorded.name:
        return None, False
    found = next((p for p in (recorded, path.parent / recorded.name) if p.is_file()), None)
    return found, found is not None and file_sha256(found) == source.get("sha256")


def load_model(
    path: str | os.PathLike[str],
    *,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    trust_model: bool = False,
) -> nn.Module:
    """The model in ``path`` (binarized if it is a converted bnnc checkpoint); see :func:`load_checkpoint`."""
    return load_checkpoint(path, arch=arch, arch_kwargs=arch_kwargs, trust_model=trust_model).model


# ----------------------------------------------------------------------------- writing


def check_output(path: str | os.PathLike[str], *, inputs: tuple[Any, ...] = (), overwrite: bool = False) -> None:
    """:func:`check_outputs` for one output."""
    check_outputs((path,), inputs, overwrite=overwrite)


def check_outputs(outputs: Iterable[str | os.PathLike[str]], inputs: Iterable[Any] = (), *,
                  overwrite: bool = False) -> None:
    """One rule for every command's outputs (side files included), checked before any work.

    An output is refused when it is one of the ``inputs`` (model, data, teacher, FP32 model, ONNX,
    config, resume state: anything path-like; the same file by resolved path or by inode, so a hard
    link or a symlink counts) or a file inside an input folder; when two outputs are one file; when it
    exists and isn't a regular file (a device, a FIFO, a folder), even with ``overwrite``; when it exists
    without ``overwrite``; when its folder is missing or not writable.
    """
    sources = [Path(os.fspath(i)).expanduser() for i in inputs if isinstance(i, (str, os.PathLike))]
    sources = [i for i in sources if i.exists()]
    seen: dict[Path, Path] = {}
    for raw in outputs:
        text = os.fspath(raw)
        if text.endswith(("/", os.sep)):
            raise OutputError(f"the output {text} names a folder", "give a file name, e.g. -o model.bnnc")
        path = Path(text)
        key = path.resolve()
        if key in seen:
            raise OutputError(f"{seen[key]} and {path} are one file, given for two outputs", "give each its own path")
        seen[key] = path
        for src in sources:
            if _same_file(path, src) or (src.is_dir() and path.exists() and key.is_relative_to(src.resolve())):
                raise OutputError(f"the output {path} is the input {src}", "choose another output path")
        if path.exists() and not path.is_file():
            what = "a directory" if path.is_dir() else "not a regular file"
            raise OutputError(f"the output {path} is {what}", "give the path of a new or regular file")
        if path.exists() and not overwrite:
            raise OutputError(f"{path} already exists", "pass --force to overwrite it, or choose another -o")
        if not path.parent.is_dir():
            raise OutputError(f"the folder {path.parent} does not exist", "create it first, or choose another -o")
        try:  # creating a file is the only reliable test: permissions don't bind root, read-only mounts do
            fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        except OSError as e:
            raise OutputError(f"can't write in the folder {path.parent} ({e.strerror})", "choose another -o") from None
        os.close(fd)
        os.unlink(probe)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and os.path.samefile(a, b)
    except OSError:
        return False


@contextlib.contextmanager
def output_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``path`` (an advisory ``flock``, released by the kernel if the process
    dies) for a long write such as fine-tuning: a second bnnc writing the same output stops with one line."""
    import fcntl

    target = Path(path)
    lock = target.with_name(f".{target.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"another bnnc is writing {target}", "wait for it to finish, or choose another -o") from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None], *, overwrite: bool = False) -> Path:
    """Write through a temporary file in the same folder, then rename: readers never see half a file.

    Without ``overwrite`` an existing file is never replaced, even if it appears meanwhile.
    """
    path = Path(path)
    check_output(path, overwrite=overwrite)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"can't write in {path.parent}: {e.strerror}", "choose another -o") from None
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; outputs get the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path appeared meanwhile: never clobber
            except FileExistsError:
                raise OutputError(f"{path} already exists", "pass --force to overwrite it") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    state_dict: Mapping[str, torch.Tensor],
    arch: str | None,
    arch_kwargs: Mapping[str, Any] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    binarized: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a bnnc checkpoint (format in the module docstring) atomically."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs or {}),
        "arch_seal": seal.seal(arch, dict(arch_kwargs or {})) if arch else None,  # bnnc.seal: later steps may call it
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "preprocessing": dict(preprocessing) if preprocessing is not None else None,
        "metrics": dict(metrics or {}),
        "binarized": dict(binarized) if binarized is not None else None,
    }
    return atomic_write(path, lambda f: torch.save(payload, f), overwrite=overwrite)

