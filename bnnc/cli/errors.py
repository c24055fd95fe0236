"""The one place that turns exceptions into a message, a hint and an exit code.

0 ok · 1 internal error · 2 bad input or usage · 3 a report threshold failed.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from bnnc.errors import BnncError


def _debug(ctx: typer.Context) -> bool:
    root = ctx.find_root()
    return bool(root.obj and root.obj.get("debug"))


def _interrupted() -> None:
    typer.echo("interrupted — outputs are written atomically, so none is half-written "
               "(bnnc finetune: continue with --resume)", err=True)
    raise typer.Exit(130) from None


def _caused_by_interrupt(e: BaseException) -> bool:
    seen: set[int] = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


@contextmanager
def reported_errors(ctx: typer.Context) -> Iterator[None]:
    """Run a command body; print one line per failure on stderr and exit with its code."""
    try:
        yield
    except BnncError as e:
        if _debug(ctx):
            traceback.print_exc()
        hint = f" — {e.hint}" if e.hint else ""
        typer.echo(f"error: {e.message}{hint}", err=True)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        _interrupted()
    except (typer.Exit, typer.Abort):
        raise
    except Exception as e:  # noqa: BLE001 - anything else is a bug in bnnc
        if _caused_by_interrupt(e):  # Ctrl-C inside a library (torch.save's writer) re-raised as its own error
            _interrupted()
        if _debug(ctx):
            traceback.print_exc()
        typer.echo(f"internal error: {type(e).__name__}: {e} — re-run with --debug and report the traceback",
                   err=True)
        raise typer.Exit(1) from None
