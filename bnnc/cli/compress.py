"""``bnnc compress``: convert -> finetune -> export -> report in one command, into one folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from bnnc.cli.errors import reported_errors
from bnnc.cli.report import (
    ConfigFile, MaxAccuracyDrop, MaxParityMismatch, MinCompression, MinSpeedup, TrustModel, finish, limits_from, render,
)


def compress_command(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(help="FP32 model (as for bnnc convert).")],
    data: Annotated[Optional[str], typer.Option(help="Training/evaluation data; or `data` in the config file.")]
        = None,
    epochs: Annotated[Optional[int], typer.Option(help="Fine-tuning epochs (default 3).", min=1)] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Folder for everything "
                                                   "(default: MODEL stem + '-bnnc').")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Fine-tuning batch size (default 128).", min=1)] = None,
    uint8_input: Annotated[Optional[bool], typer.Option("--uint8-input/--float-input",
                                                        help="Export taking raw uint8 pixels.")] = None,
    arch: Annotated[Optional[str], typer.Option(help="Architecture of a plain state dict: pkg.module:factory.")]
        = None,
    max_accuracy_drop: MaxAccuracyDrop = None,
    min_compression: MinCompression = None,
    min_speedup: MinSpeedup = None,
    max_parity_mismatch: MaxParityMismatch = None,
    config: ConfigFile = None,
    trust_model: TrustModel = False,
    force: Annotated[bool, typer.Option(help="Overwrite existing outputs in the folder.")] = False,
) -> None:
    """The whole job: binarize, fine-tune, export to ONNX and report, with CI thresholds."""
    err = Console(stderr=True)
    with reported_errors(ctx):
        from bnnc.cli.finetune import _Renderer
        from bnnc.config import load_config, merge
        from bnnc.errors import BnncError
        from bnnc.pipeline import compress
        from bnnc.training import FinetuneConfig

        file_options, _ = load_config(config)
        o = merge(file_options, data=data, epochs=epochs, batch_size=batch_size, uint8_input=uint8_input,
                  max_accuracy_drop=max_accuracy_drop, min_compression=min_compression, min_speedup=min_speedup,
                  max_parity_mismatch=max_parity_mismatch)
        if "data" not in o:
            raise BnncError("no data", "pass --data, or set data in bnnc.toml")
        folder = output or model.with_name(f"{model.stem}-bnnc")
        ft_config = FinetuneConfig(epochs=o.get("epochs", 3), batch_size=o.get("batch_size", 128))
        report_options = {k: v for k, v in (("threads", o.get("threads")), ("samples", o.get("samples")),
                                             ("batches", (1, o["batch"]) if "batch" in o else None)) if v is not None}
        with _Renderer(err) as progress:
            result = compress(model, o["data"], folder, config=ft_config, limits=limits_from(o),
                              uint8_input=bool(o.get("uint8_input", False)), arch=arch, trust_model=trust_model,
                              overwrite=force, report_options=report_options,
                              on_stage=lambda s: err.print(f"[bold]{s}[/]"), on_event=progress)
    render(result.report, Console())
    files = ", ".join(str(p.name) for p in (result.converted, result.finetuned, result.history, result.onnx,
                                            *result.report_files.values()))
    err.print(f"wrote {files} in {result.folder}")
    finish(result.report, err)
