"""The ``bnnc`` command: parse arguments, call one library function, render the result.

torch is imported inside the commands, so ``bnnc --help`` stays instant.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bnnc import __version__
from bnnc.cli.convert import convert_command
from bnnc.cli.compress import compress_command
from bnnc.cli.export import export_command
from bnnc.cli.report import report_command
from bnnc.cli.finetune import finetune_command

app = typer.Typer(
    name="bnnc",
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
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    ctx.obj = {"debug": debug}


app.command("convert", no_args_is_help=True)(convert_command)
app.command("finetune", no_args_is_help=True)(finetune_command)
app.command("export", no_args_is_help=True)(export_command)
app.command("report", no_args_is_help=True)(report_command)
app.command("compress", no_args_is_help=True)(compress_command)


def main() -> None:
    """Console-script entry point."""
    app()
