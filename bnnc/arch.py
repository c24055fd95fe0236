"""``--arch pkg.module:factory`` (or ``path/to/models.py:factory``): the architecture a state dict is
loaded into, resolved only to what the user allowed.

An ``nn.Module`` subclass is accepted wherever the reference comes from; a function only when the
user named it (``--arch``, ``BNNC_ALLOW_ARCH``) or the file naming it carries this user's seal
(:mod:`bnnc.seal`); nothing in the standard library, torch or bnnc's own modules (but its sample
architectures, :mod:`bnnc.zoo`) at all — so a tampered reference can't call ``os:system``,
``sympy:sympify`` or ``bnnc.loading:load_model``. A file path is imported only when the user named
or sealed it too: importing a file runs it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from bnnc import seal, usercode
from bnnc.errors import ModelLoadError, UntrustedModelError, first_line
from bnnc.usercode import not_user_code


def resolve_arch(ref: str, *, named_by_user: bool = True, source: Path | None = None) -> Callable[..., Any]:
    """Import ``pkg.module:factory`` (factory may be ``Class`` or ``obj.attr``) and check it is safe.

    An ``nn.Module`` subclass is accepted wherever the reference comes from; a function only when the
    user named it (``--arch``, the ``arch=`` argument) or ``source``, the file that names it, carries
    this user's seal (:mod:`bnnc.seal`). Nothing from the standard library, torch, or bnnc itself
    (but its sample architectures, :mod:`bnnc.zoo`) is accepted at all.
    """
    module_name, attr = usercode.split(ref)
    if not module_name or not attr:
        raise ModelLoadError(f"architecture reference {ref!r} is not of the form pkg.module:factory",
                             "e.g. --arch torchvision.models:resnet18, --arch mymodels:Net or --arch src/models.py:Net")
    if not_user_code(module_name):
        raise ModelLoadError(f"architecture reference {ref!r} points into {module_name.split('.')[0]!r}, "
                             "which can't define a model architecture", "name the module that defines your model")
    if usercode.is_file(module_name) and not named_by_user:  # importing a file runs it: not one a file chose
        raise UntrustedModelError(
            f"{source} names the file {module_name} as its architecture's code; bnnc imports a file named by "
            "a checkpoint only if this user's bnnc recorded it there (a file from elsewhere could name any file)",
            f"if you trust it, pass --arch {ref} or set BNNC_ALLOW_ARCH={ref}")
    try:
        obj: Any = usercode.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - the user's module can raise anything on import
        fix = ("check the path, or pass --arch with the file's new place" if isinstance(e, FileNotFoundError) else
               "install the package that defines the model, or run bnnc from its folder"
               if isinstance(e, ModuleNotFoundError) and not usercode.is_file(module_name) else
               "the module must import without error or exit: fix it, or move the model into a module of its own")
        raise ModelLoadError(f"can't import {module_name!r} for architecture {ref!r} ({first_line(e)})", fix) from None
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


def allowed(ref: str, allow_arch: str | None) -> bool:
    """Whether the user allowed the factory ``ref`` for this command: ``--arch`` or ``BNNC_ALLOW_ARCH``."""
    return (allow_arch is not None and usercode.canonical(ref) == usercode.canonical(allow_arch)) or seal.allowed(ref)


CLASS_COUNT_NAMES = ("num_classes", "n_classes", "classes", "nclasses", "num_labels", "num_outputs", "n_outputs",
                     "outputs", "out_features", "output_dim", "out_dim", "output_size", "nb_classes")
"""A factory's usual names for its number of classes (the outputs of the last layer)."""
INPUT_SIZE_NAMES = ("in_ch", "in_chans", "in_channels", "input_channels", "channels", "n_channels", "num_channels",
                    "in_features", "input_dim", "in_dim", "input_size", "n_inputs", "num_inputs", "num_features")
"""Its usual names for the size of each input (the first layer's input channels or features)."""


def build_model(ref: str, kwargs: Mapping[str, Any] | None = None, *, named_by_user: bool = True,
                source: Path | None = None, weights: Mapping[str, Any] | None = None) -> nn.Module:
    """Instantiate the architecture ``ref`` with ``kwargs`` (JSON-like values only); see :func:`resolve_arch`.
    ``weights``, the state dict to be loaded, only fills in the fix when required arguments are missing."""
    factory = resolve_arch(ref, named_by_user=named_by_user, source=source)
    kwargs = dict(kwargs or {})
    for key, value in kwargs.items():
        if not is_plain(value):
            raise ModelLoadError(f"argument {key!r} for architecture {ref!r} is a {type(value).__name__}",
                                 "architecture arguments must be numbers, strings, booleans, lists or dicts")
    try:
        with usercode.bare_argv(ref):
            model = factory(**kwargs)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's code can raise anything, or exit
        raise ModelLoadError(f"building architecture {ref!r} with {kwargs} failed ({first_line(e)})",
                             _arguments_hint(factory, kwargs, weights)) from None
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"architecture {ref!r} returned a {type(model).__name__}, not an nn.Module",
                             "point --arch at a function that returns the model")
    return model


def is_plain(v: Any) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, (list, tuple)):
        return all(is_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and is_plain(x) for k, x in v.items())
    return False


def _arguments_hint(factory: Callable[..., Any], kwargs: Mapping[str, Any], weights: Mapping[str, Any] | None) -> str:
    """The fix for a factory that failed: its required arguments not given, as the --arch-kwargs to pass, with the
    number of classes and the input size read from the weights where the names say which they are."""
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature
        params = []
    missing = [p.name for p in params if p.default is p.empty and p.name not in kwargs
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not missing:
        return "check the architecture's arguments (--arch-kwargs)"
    shapes = [tuple(v.shape) for v in (weights or {}).values() if getattr(v, "ndim", 0) >= 2]
    known = {**dict.fromkeys(INPUT_SIZE_NAMES, shapes[0][1] if shapes else None),
             **dict.fromkeys(CLASS_COUNT_NAMES, shapes[-1][0] if shapes else None)}
    values = ", ".join(f'"{n}": {known.get(n) if known.get(n) is not None else "..."}' for n in missing)
    return f"pass {', '.join(missing)}: --arch-kwargs '{{{values}}}'"
