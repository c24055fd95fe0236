"""bnnc's checkpoint format: one typed definition, versioned, written and read in one place.

A bnnc checkpoint is a plain dict saved with ``torch.save`` that reloads with
``torch.load(weights_only=True)`` — no pickled code. Its entries are the fields of
:class:`Checkpoint` (``format``/``format_version`` first), nested dataclasses written as dicts::

    {"format": "bnnc-model", "format_version": 1,
     "arch": "pkg.module:factory" | None, "arch_kwargs": {...},   # how to rebuild the FP32 module
     "arch_seal": "..." | None,                                    # bnnc.seal: this user's bnnc wrote "arch"
     "state_dict": {...},                                          # weights (converted ones if binarized)
     "preprocessing": {...} | None,                                # bnnc.data.Preprocessing (or just input_shape)
     "metrics": {...},                                             # e.g. test accuracy
     "binarized": None | BinarizedInfo:
        {"plan": Plan, "options": ConvertOptions,
         "source": {"path", "sha256", "form"} | None,             # the FP32 file it was converted from
         "calibration": {"samples", "data", "data_path"} | None,  # thresholds calibrated on data
         "sensitivity": {...} | None, "auto_plan": {...} | None,  # bnnc.sensitivity, when measured/used
         "finetune": {"config", "best_epoch", "best_val_accuracy", "from", "from_sha256", "data_path"} | None,
         "bnnc_version": "..."}}

(De)serialization is derived from the dataclasses' fields: a field whose type has ``from_dict``
(``Plan``, ``ConvertOptions``) uses it, a nested dataclass is read field by field, an optional field
missing from an older file is its default. A file of another ``format_version`` is refused with one
line naming both versions.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bnnc import seal
from bnnc.data import Preprocessing
from bnnc.errors import BnncError, ModelLoadError, first_line
from bnnc.outputs import atomic_write
from bnnc.planning import Plan
from bnnc.swap import ConvertOptions
from bnnc.version import __version__

FORMAT = "bnnc-model"
FORMAT_VERSION = 1
PROGRAM_FORM = "torch.export program"   # SourceInfo.form of a model converted from a .pt2 program


@dataclass(frozen=True)
class SourceInfo:
    """The FP32 file a model was converted from: where it was, its SHA-256, how it was stored."""

    path: str
    sha256: str
    form: str | None = None     # ModelFile.form; None in files written before it was recorded


@dataclass(frozen=True)
class CalibrationInfo:
    """Thresholds calibrated by ``bnnc convert --data``: on how many samples of which data."""

    samples: int
    data: str
    data_path: str | None = None  # the data's file or folder, absolute, when it was one: the steps after take it


@dataclass(frozen=True)
class FinetuneInfo:
    """What ``bnnc finetune`` did to a checkpoint: its settings and the epoch kept."""

    config: dict[str, Any]
    best_epoch: int
    best_val_accuracy: float
    source: str = field(metadata={"key": "from"})   # the checkpoint fine-tuned
    source_sha256: str = field(metadata={"key": "from_sha256"})
    data_path: str | None = None  # the training data's file or folder, absolute, when it was one


@dataclass(frozen=True)
class BinarizedInfo:
    """How a binarized checkpoint was made: enough to rebuild its model, and its provenance."""

    plan: Plan
    options: ConvertOptions
    source: SourceInfo | None = None
    calibration: CalibrationInfo | None = None
    sensitivity: dict[str, Any] | None = None
    auto_plan: dict[str, Any] | None = None
    finetune: FinetuneInfo | None = None
    bnnc_version: str = __version__


@dataclass(frozen=True)
class Checkpoint:
    """A bnnc checkpoint as it is on disk (format in the module docstring)."""

    state_dict: dict[str, torch.Tensor]
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    arch_seal: str | None = None
    preprocessing: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    binarized: BinarizedInfo | None = None


class MalformedEntry(Exception):
    """The entry ``where`` (dotted) of a checkpoint doesn't have the type bnnc writes there."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


def _key(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("key", f.name)


def encode(value: Any) -> Any:
    """A dataclass as the plain dict bnnc writes: ``to_dict`` where a type has one, else field by field."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_key(f): encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return dict(value)
    return value


def decode(cls: type[Any], d: Any, where: str) -> Any:
    """The dataclass ``cls`` read back from ``d``; a wrong type anywhere raises :class:`MalformedEntry`."""
    if not isinstance(d, Mapping):
        raise MalformedEntry(where)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = _key(f)
        if key not in d:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise MalformedEntry(f"{where}.{key}")
            continue
        values[f.name] = _decode_value(hints[f.name], d[key], f"{where}.{key}")
    return cls(**values)


def _decode_value(kind: Any, value: Any, where: str) -> Any:
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) and type(None) in args:  # X | None
        if value is None:
            return None
        (kind,) = [a for a in args if a is not type(None)]
    if hasattr(kind, "from_dict"):
        if not isinstance(value, Mapping):
            raise MalformedEntry(where)
        return kind.from_dict(dict(value))
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return decode(kind, value, where)
    origin = typing.get_origin(kind) or kind
    if not isinstance(value, origin) or (origin is int and isinstance(value, bool)):
        if not (origin is float and isinstance(value, int) and not isinstance(value, bool)):
            raise MalformedEntry(where)
    return dict(value) if origin is dict else value


def parse(obj: Mapping[str, Any], path: Path) -> Checkpoint:
    """The checkpoint in the dict ``obj`` read from ``path`` (any dict naming an ``arch``, or bnnc's own
    format): every entry checked for the type bnnc writes, a tampered or foreign file one clear error."""
    version = obj.get("format_version", FORMAT_VERSION)
    if obj.get("format") == FORMAT and version != FORMAT_VERSION:
        raise ModelLoadError(f"{path} is a bnnc checkpoint of format version {version}; "
                             f"this bnnc reads version {FORMAT_VERSION}",
                             "upgrade bnnc" if isinstance(version, int) and version > FORMAT_VERSION
                             else "convert the FP32 model again with this bnnc")
    state_dict = obj.get("state_dict")
    if not isinstance(state_dict, Mapping):
        raise ModelLoadError(f"{path} names an architecture but has no 'state_dict'",
                             "save {'arch': ..., 'arch_kwargs': ..., 'state_dict': model.state_dict()}")
    try:
        fields = {k: obj[k] for k in ("arch", "arch_kwargs", "arch_seal", "preprocessing", "metrics", "binarized")
                  if obj.get(k) is not None}
        checkpoint: Checkpoint = decode(Checkpoint, {**fields, "state_dict": dict(state_dict)}, "checkpoint")
    except MalformedEntry as e:
        where = e.where.removeprefix("checkpoint.")
        if where == "arch":
            raise ModelLoadError(f"{path}: 'arch' must be a string like 'pkg.module:factory'",
                                 "fix the checkpoint") from None
        raise ModelLoadError(f"{path}: the checkpoint's {where!r} entry is malformed",
                             "re-run the bnnc step that wrote it") from None
    except BnncError:
        raise
    except Exception as e:  # noqa: BLE001 - Plan/ConvertOptions.from_dict on a tampered entry
        raise ModelLoadError(f"{path}: the checkpoint's 'binarized' entry is malformed ({first_line(e)})",
                             "re-run the bnnc step that wrote it") from None
    _check_preprocessing(path, checkpoint.preprocessing)
    return checkpoint


def _check_preprocessing(path: Path, preprocessing: dict[str, Any] | None) -> None:
    if preprocessing is None:
        return
    shape = preprocessing.get("input_shape")
    if shape is not None and not (isinstance(shape, (list, tuple)) and shape and all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        raise ModelLoadError(f"{path}: the recorded input shape {shape!r} is malformed",
                             "re-run the bnnc step that wrote it")
    if {"mean", "std"} <= preprocessing.keys():  # a full preprocessing (else just the input shape)
        try:
            Preprocessing.from_dict(dict(preprocessing))
        except Exception as e:  # noqa: BLE001 - a DataError, or anything a tampered dict makes from_dict raise
            raise ModelLoadError(f"{path}: the recorded preprocessing is malformed ({first_line(e)})",
                                 "re-run the bnnc step that wrote it") from None


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    state_dict: Mapping[str, torch.Tensor],
    arch: str | None,
    arch_kwargs: Mapping[str, Any] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    binarized: BinarizedInfo | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a bnnc checkpoint (format in the module docstring) atomically."""
    kwargs = dict(arch_kwargs or {})
    checkpoint = Checkpoint(
        state_dict={k: v.detach().cpu() for k, v in state_dict.items()},
        arch=arch, arch_kwargs=kwargs,
        arch_seal=seal.seal(arch, kwargs) if arch else None,  # bnnc.seal: later steps may call it
        preprocessing=dict(preprocessing) if preprocessing is not None else None,
        metrics=dict(metrics or {}), binarized=binarized,
    )
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **encode(checkpoint)}
    return atomic_write(path, lambda f: torch.save(payload, f), overwrite=overwrite)
