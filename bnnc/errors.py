"""The only errors a user sees: a message saying what is wrong and a hint saying how to fix it.

The CLI turns a ``BnncError`` into one line on stderr and exit code ``exit_code``; anything else
escaping the library is a bug (exit 1).
"""

from __future__ import annotations


class BnncError(Exception):
    """A problem the user can fix. ``hint`` says how."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ModelLoadError(BnncError):
    """The model file is missing, unreadable, of an unsupported kind, or doesn't match its architecture."""


class UntrustedModelError(ModelLoadError):
    """Loading the file would run code from it and the user has not said they trust it."""


class PlanError(BnncError):
    """A precision plan or its overrides don't fit the model."""


class DataError(BnncError):
    """A data set is missing, malformed, or doesn't fit the model."""


class ExportError(BnncError):
    """The model can't be exported, or the exported model doesn't match it."""


class OutputError(BnncError):
    """An output can't be written (exists without --force, same as an input, folder missing)."""


def first_line(exc: BaseException, limit: int = 160, *, with_type: bool = True) -> str:
    """``Type: first line of the message`` (the type alone for an empty message; without ``with_type``
    the line alone), cut to ``limit`` characters: a library's error text, short enough for one line."""
    line = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    text = (f"{type(exc).__name__}: {line}" if with_type else line) if line else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
