"""Deprecated: ``bnnc.io`` was split (it also shadowed the standard library's ``io``). Its names now live
in :mod:`bnnc.loading`, :mod:`bnnc.checkpoint`, :mod:`bnnc.arch`, :mod:`bnnc.formats` and
:mod:`bnnc.outputs`; importing them from here warns, and this module goes in the next release."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = {
    "ModelFile": "bnnc.loading", "load_checkpoint": "bnnc.loading", "load_model": "bnnc.loading",
    "locate_source": "bnnc.loading", "load_weights": "bnnc.loading", "check_finite": "bnnc.loading",
    "save_checkpoint": "bnnc.checkpoint", "FORMAT": "bnnc.checkpoint", "FORMAT_VERSION": "bnnc.checkpoint",
    "PROGRAM_FORM": "bnnc.checkpoint",
    "resolve_arch": "bnnc.arch", "build_model": "bnnc.arch", "not_user_code": "bnnc.arch",
    "file_sha256": "bnnc.formats", "archive_problem": "bnnc.formats", "MAX_PICKLE_BYTES": "bnnc.formats",
    "atomic_write": "bnnc.outputs", "check_output": "bnnc.outputs", "check_outputs": "bnnc.outputs",
    "output_lock": "bnnc.outputs",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'bnnc.io' has no attribute {name!r}")
    warnings.warn(f"bnnc.io.{name} moved to {module}.{name}; bnnc.io goes in the next release",
                  DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(module), name)
