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
        typer.echo("interrupted — outputs are written atomically, so none is half-written "
                   "(bnnc finetune: continue with --resume)", err=True)
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as e:  # noqa: BLE001 - anything else is a bug in bnnc
        if _debug(ctx):
            traceback.print_exc()
        typer.echo(f"internal error: {type(e).__name__}: {e} — re-run with --debug and report the traceback",
                   err=True)
        raise typer.Exit(1) from None
