"""The ``bnnc`` command: parse arguments, call one library function, render the result.

torch is imported inside the commands, so ``bnnc --help`` stays instant.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from bnnc.cli.compress import compress_command
from bnnc.cli.convert import convert_command
from bnnc.cli.export import export_command
from bnnc.cli.finetune import finetune_command
from bnnc.cli.report import report_command
from bnnc.version import __version__

# click's exceptions, or the copy of click that newer typer releases vendor
_click = importlib.import_module(typer.BadParameter.__module__)


def _debug_first(args: list[str]) -> list[str]:
    """``--debug`` anywhere before a ``--`` moved before the command: every error's hint says "re-run with
    --debug", and people add it at the end (``bnnc export m.bnnc --debug``), where the command would refuse it."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return args
    return ["--debug", *(a for i, a in enumerate(args) if i >= end or a != "--debug")]


class _OneLineErrors(TyperGroup):
    """Usage errors as one line on stderr, like every other error, not typer's multi-line panel."""

    def main(  # type: ignore[override]  # the click version's other parameters pass through **extra
        self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
        standalone_mode: bool = True, **extra: Any,
    ) -> Any:
        args = _debug_first(sys.argv[1:] if args is None else list(args))
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except getattr(_click, "NoArgsIsHelpError", ()) as e:
            sys.exit(e.exit_code)  # typer has printed the help
        except _click.UsageError as e:
            see = f" — see '{e.ctx.command_path} -h'" if e.ctx else ""
            typer.echo(f"error: {e.format_message()}{see}", err=True)
            sys.exit(e.exit_code)
        except _click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code or 0)


class _Command(TyperCommand):
    """Usage lines as people write them: ``MODEL``, not typer's ``{MODEL}`` for a required argument."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in super().collect_usage_pieces(ctx)]


app = typer.Typer(
    name="bnnc",
    cls=_OneLineErrors,
    help="Turn a trained FP32 PyTorch model into a binarized neural network (Hubara et al., 2016).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bnnc {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors (bug reports).")] = False,
    version: Annotated[  # noqa: ARG001 - handled by its eager callback
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    ctx.obj = {"debug": debug}


app.command("convert", no_args_is_help=True, cls=_Command)(convert_command)
app.command("finetune", cls=_Command)(finetune_command)  # these three run without MODEL: the previous step's
app.command("export", cls=_Command)(export_command)
app.command("report", cls=_Command)(report_command)
app.command("compress", no_args_is_help=True, cls=_Command)(compress_command)


def main() -> None:
    """Console-script entry point."""
    app()
