"""``compress``: the whole job in one call — convert -> finetune -> export -> report, into one folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bnnc.conversion import convert_file
from bnnc.data import DataSpec, Preprocessing, load_data
from bnnc.errors import BnncError, OutputError
from bnnc.export import ExportResult, export_onnx
from bnnc.io import atomic_write, check_output, load_checkpoint
from bnnc.reporting import Report, Thresholds, report
from bnnc.training import (
    FinetuneConfig,
    FinetuneResult,
    finetune,
    history_path_for,
    state_path,
)


@dataclass(frozen=True)
class CompressResult:
    """Where everything went, and the report."""

    folder: Path
    converted: Path
    finetuned: Path
    history: Path
    onnx: Path
    report_files: dict[str, Path]
    finetune: FinetuneResult
    export: ExportResult
    report: Report


def outputs(model_path: Path, folder: Path) -> dict[str, Path]:
    """The files ``compress`` writes for ``model_path`` into ``folder``."""
    stem = model_path.stem
    finetuned = folder / f"{stem}.finetuned.bnnc"
    return {"converted": folder / f"{stem}.bnnc", "finetuned": finetuned, "history": history_path_for(finetuned),
            "state": state_path(finetuned), "onnx": folder / f"{stem}.onnx", "json": folder / "report.json", "markdown": folder / "report.md",
            "html": folder / "report.html"}


def compress(
    model_path: str | os.PathLike[str],
    data: DataSpec,
    folder: str | os.PathLike[str],
    *,
    config: FinetuneConfig | None = None,
    limits: Thresholds | None = None,
    uint8_input: bool = False,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    trust_model: bool = False,
    overwrite: bool = False,
    report_options: dict[str, Any] | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> CompressResult:
    """Convert ``model_path``, fine-tune it on ``data``, export it and report on it, all into ``folder``.

    ``folder`` is created if its parent exists. Every output is checked, and the model and data
    are loaded, before anything is written: bad input stops the run at once with nothing written,
    not after training. The data is read once and shared by all four steps.
    """
    stage = on_stage or (lambda s: None)
    src, out = Path(model_path), Path(folder)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder", "give a folder for -o")
    if not out.parent.is_dir():
        raise OutputError(f"the folder {out.parent} does not exist", "create it first, or choose another -o")
    files = outputs(src, out)
    if out.is_dir():
        for path in files.values():
            check_output(path, inputs=(src,), overwrite=overwrite)
    loaded = load_checkpoint(src, arch=arch, arch_kwargs=arch_kwargs, trust_model=trust_model)
    if loaded.is_binarized:
        raise BnncError(f"{src} is already binarized", "compress the FP32 model it was made from")
    splits = load_data(data, preprocessing=Preprocessing.from_dict(loaded.preprocessing)
                       if loaded.preprocessing else None, input_shape=loaded.input_shape)
    out.mkdir(exist_ok=True)

    stage(f"convert {src}")
    converted = convert_file(src, files["converted"], arch=arch, arch_kwargs=arch_kwargs, trust_model=trust_model,
                             data=splits, overwrite=overwrite).output
    stage("fine-tune")
    ft = finetune(converted, splits, config or FinetuneConfig(), files["finetuned"], overwrite=overwrite,
                  trust_model=trust_model, history_path=files["history"], on_event=on_event)
    stage("export")
    ex = export_onnx(ft.output, files["onnx"], data=splits, uint8_input=uint8_input, overwrite=overwrite,
                     trust_model=trust_model)
    stage("report")
    rep = report(ft.output, splits, onnx_path=files["onnx"], limits=limits, trust_model=trust_model,
                 on_progress=stage, **(report_options or {}))
    for kind, render in (("json", rep.to_json), ("markdown", rep.to_markdown), ("html", rep.to_html)):
        text = render()
        atomic_write(files[kind], lambda f, text=text: f.write(text.encode()), overwrite=overwrite)
    return CompressResult(out, converted, ft.output, ft.history_path, files["onnx"],
                          {k: files[k] for k in ("json", "markdown", "html")}, ft, ex, rep)
