"""``bnnc report``: size, accuracy and speed against FP32 and ORT int8; thresholds for CI (exit 3)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console

from bnnc import defaults
from bnnc.cli import options as opt
from bnnc.cli import render
from bnnc.cli.convert import parse_kwargs
from bnnc.cli.errors import reported_errors

if TYPE_CHECKING:
    from bnnc.reporting import Limits, Report


def report_command(
    ctx: typer.Context,
    model: Annotated[Optional[Path], typer.Argument(
        metavar="MODEL", help="Binarized checkpoint (from bnnc convert / finetune; default: the one in the "
        "working directory, fine-tuned if there is one).", show_default=False)] = None,
    data: Annotated[Optional[str], typer.Option(help="Evaluation data (its test split); or `data` in the "
                                                "config file; default: the data MODEL records (from convert or "
                                                "finetune --data).")] = None,
    onnx_model: Annotated[Optional[Path], typer.Option("--onnx", help="The bnnc ONNX to measure "
                                                       "(default: export to memory).")] = None,
    fp32: Annotated[Optional[Path], typer.Option(help="The FP32 source model, if not at its recorded path; a "
                                                      "state dict takes --arch or the recorded architecture.")] = None,
    arch: opt.Arch = None,
    arch_kwargs: opt.ArchKwargs = None,
    as_json: Annotated[bool, opt.flag("--json", help="Print the report as JSON on stdout (instead of the "
                                               "tables).")] = False,
    json_out: Annotated[Optional[str], typer.Option("--json-out", help="Write the report as JSON here.")] = None,
    markdown: Annotated[Optional[str], typer.Option(help="Write the report as Markdown here "
                                                     "(e.g. >> $GITHUB_STEP_SUMMARY).")] = None,
    html_out: Annotated[Optional[str], typer.Option("--html", help="Write a self-contained HTML page with "
                                                     "plots here.")] = None,
    batch: opt.Batch = None,
    threads: opt.Threads = None,
    samples: opt.Samples = None,
    max_accuracy_drop: opt.MaxAccuracyDrop = None,
    min_compression: opt.MinCompression = None,
    min_speedup: opt.MinSpeedup = None,
    max_parity_mismatch: opt.MaxParityMismatch = None,
    min_openvino_speedup: opt.MinOpenvinoSpeedup = None,
    openvino: Annotated[Optional[bool], opt.flag("--openvino/--no-openvino", help="Also measure the bnnc "
                                                 "OpenVINO IR and the FP32 model in OpenVINO (default: when the "
                                                 "openvino package is installed).")] = None,
    config: opt.ConfigFile = None,
    trust_model: opt.TrustModel = False,
    force: opt.Force = False,
) -> None:
    """Measure a binarized model against its FP32 source and ORT int8: size, accuracy, speed; gate CI on it."""
    err = Console(stderr=True)
    kwargs = parse_kwargs(arch_kwargs)
    with reported_errors(ctx):
        from bnnc.config import load_config, merge
        from bnnc.outputs import check_outputs
        from bnnc.reporting import report

        model = model or opt.taken("report", err)
        file_options, _ = load_config(config)
        o = merge(file_options, data=data, batch=batch, threads=threads, samples=samples,
                  max_accuracy_drop=max_accuracy_drop, min_compression=min_compression, min_speedup=min_speedup,
                  max_parity_mismatch=max_parity_mismatch,
                  min_openvino_speedup=min_openvino_speedup)
        spec = o["data"] if "data" in o else opt.data_taken("report", model, err)
        check_outputs([p for p in (json_out, markdown, html_out) if p is not None],
                      (model, spec, onnx_model, fp32, config), overwrite=force)
        with err.status("measuring") as status:
            rep = report(model, spec, onnx_path=onnx_model, fp32_path=fp32, arch=arch,
                         arch_kwargs=kwargs, limits=limits_from(o),
                         batches=(1, o.get("batch", defaults.REPORT_BATCH)), threads=o.get("threads"),
                         samples=o.get("samples"),
                         openvino=openvino, trust_model=trust_model,
                         on_event=lambda event: status.update(render.status_line(event, "report: ")))
        write_reports(rep, json_out, markdown, html_out, force)
    if as_json:
        typer.echo(rep.to_json())
    else:
        render.report(rep, Console())
    finish(rep)


def limits_from(options: dict[str, Any]) -> Limits:
    """The thresholds among the merged options."""
    from bnnc.reporting import Limits

    return Limits(**{k: options.get(k) for k in ("max_accuracy_drop", "min_compression", "min_speedup",
                                                       "max_parity_mismatch", "min_openvino_speedup")})


def write_reports(rep: Report, json_out: str | None, markdown: str | None, html_out: str | None,
                  force: bool) -> None:
    from bnnc.outputs import write_text

    for path, render_fn in ((json_out, rep.to_json), (markdown, rep.to_markdown), (html_out, rep.to_html)):
        if path is not None:
            write_text(path, render_fn(), overwrite=force)


def finish(rep: Report) -> None:
    """Exit 3 with one line per failing check, if any failed."""
    if rep.failed:
        for c in rep.failed:
            typer.echo(f"check failed: {c.describe()}", err=True)
        raise typer.Exit(3)
