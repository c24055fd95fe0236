"""``bnnc export``: binarized checkpoint -> mixed-precision ONNX, checked against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console

from bnnc import defaults
from bnnc.cli import options as opt
from bnnc.cli import render
from bnnc.cli.choices import FormatChoice
from bnnc.cli.errors import reported_errors

if TYPE_CHECKING:
    pass


def export_command(
    ctx: typer.Context,
    model: Annotated[Optional[Path], typer.Argument(
        metavar="MODEL", help="Binarized checkpoint (from `bnnc convert` or `bnnc finetune`; default: the one in "
        "the working directory, fine-tuned if there is one).", show_default=False)] = None,
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="File to write (default: MODEL with suffix "
                                                   ".onnx, or .xml for OpenVINO, whose weights go beside it in "
                                                   ".bin); for C a folder (default: MODEL-c).")] = None,
    fmt: Annotated[FormatChoice, typer.Option("--format", help="onnx: stock ONNX Runtime, integer kernels, "
                                              "portable. openvino: an OpenVINO IR whose binary layers run "
                                              "XNOR-popcount kernels (x86 CPUs; needs the openvino package). "
                                              "c: NAME.h + NAME.c, dependency-free C99 with XNOR-popcount "
                                              "kernels (microcontrollers and anything with a C compiler).")
                   ] = FormatChoice.onnx,
    name: Annotated[Optional[str], typer.Option("--name", help="C: the model's name in the files and functions "
                                                "(NAME_predict; default: MODEL's name).")] = None,
    float_ops: opt.FloatOps = False,
    uint8_input: Annotated[Optional[bool], opt.flag(
        "--uint8-input/--float-input", help="Take raw 8-bit pixels: the recorded preprocessing runs inside the model "
        "and the first layer on the integer path; or `uint8_input` in the config file \\[default: float input].")
    ] = None,
    check: Annotated[bool, opt.flag("--check/--no-check", help="Check the exported model against the PyTorch model "
                                    "in its runtime (ONNX Runtime, OpenVINO) before writing it.")] = True,
    data: Annotated[Optional[str], typer.Option(help="Data for the check (its evaluation split), or `data` in the "
                                                "config file; default: the data MODEL records (from convert or "
                                                "finetune --data), else seeded random inputs.")] = None,
    check_samples: opt.CheckSamples = defaults.CHECK_SAMPLES,
    reference: opt.Reference = False,
    trust_model: opt.TrustModel = False,
    as_json: Annotated[bool, opt.flag("--json", help="Print the result as JSON on stdout.")] = False,
    config: opt.ConfigFile = None,
    force: opt.Force = False,
) -> None:
    """Export a binarized model to ONNX, OpenVINO or C: 1 bit per binarized weight, same predictions."""
    err = Console(stderr=True)
    with reported_errors(ctx):
        from bnnc.config import load_config, merge
        from bnnc.errors import BnncError
        from bnnc.export import export_c, export_onnx, export_openvino

        model = model or opt.taken("export", err)

        o = merge(load_config(config)[0], data=data, uint8_input=uint8_input)
        spec = o["data"] if "data" in o else (opt.data_for_check(model, err) if check else None)
        if fmt is not FormatChoice.onnx and (float_ops or reference):
            raise BnncError(f"{'--float' if float_ops else '--reference'} applies to --format onnx only",
                            "drop it, or export with --format onnx")
        if fmt is FormatChoice.c and uint8_input:
            raise BnncError("--uint8-input applies to --format onnx and openvino; the C model always has "
                            "NAME_predict_u8 when the checkpoint records its preprocessing", "drop --uint8-input")
        if fmt is not FormatChoice.c and name is not None:
            raise BnncError("--name applies to --format c only", "drop it")
        uint8_input = fmt is not FormatChoice.c and bool(o.get("uint8_input", False))  # not the file's for C
        with err.status(f"exporting {model}" + (" and checking it against PyTorch" if check else "")):
            if fmt is FormatChoice.c:
                result = export_c(model, output, name=name, check=check, data=spec, check_samples=check_samples,
                                  overwrite=force, trust_model=trust_model)
            elif fmt is FormatChoice.openvino:
                result = export_openvino(model, output, uint8_input=uint8_input, check=check, data=spec,
                                         check_samples=check_samples, overwrite=force, trust_model=trust_model)
            else:
                result = export_onnx(
                    model, output, float_ops=float_ops, uint8_input=uint8_input, check=check, data=spec,
                    check_samples=check_samples, reference_check=reference, overwrite=force, trust_model=trust_model,
                )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        render.exported(result, Console())
        err.print("wrote " + " and ".join(str(f) for f in result.files))


