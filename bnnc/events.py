"""Progress of a step, as typed events. Every step takes one callback, ``on_event``, and calls it with these
(fine-tuning adds its own in :mod:`bnnc.training.events`); the library never prints, the CLI draws them."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stage:
    """A part of a longer job begins, e.g. ``"fine-tune"`` in ``compress``, ``"latency at batch 64"`` in ``report``."""

    text: str


@dataclass(frozen=True)
class MeasuringLayer:
    """The sensitivity pass (or the automatic plan) is measuring the model with ``name`` binarized."""

    name: str


@dataclass(frozen=True)
class Calibrating:
    """Progress of a calibration: ``done`` of ``total`` batches; ``batchnorm`` when BatchNorm statistics are
    re-estimated too (the recalibration before fine-tuning), not only the input thresholds."""

    done: int
    total: int
    batchnorm: bool = True


@dataclass(frozen=True)
class Warned:
    """Something the user should check, said as soon as it is known (before hours of training), the run going on;
    the step's result lists it too."""

    text: str


OnEvent = Callable[[Any], None]


def emitter(on_event: OnEvent | None, function: str, **deprecated: tuple[Callable[..., None] | None, type,
                                                                         Callable[[Any], tuple[Any, ...]]]) -> OnEvent:
    """``on_event`` (or nothing), also feeding the callbacks given under their old names: ``name=(callback,
    event type, arguments from the event)``. Passing one warns: the old names go in the next release."""
    given = [(cb, kind, args) for name, (cb, kind, args) in deprecated.items() if cb is not None]
    for name, (cb, _, _) in deprecated.items():
        if cb is not None:
            warnings.warn(f"{function}({name}=...) is deprecated: pass on_event=, which receives bnnc.events objects",
                          DeprecationWarning, stacklevel=3)

    def emit(event: Any) -> None:
        if on_event is not None:
            on_event(event)
        for cb, kind, args in given:
            if isinstance(event, kind):
                cb(*args(event))

    return emit
