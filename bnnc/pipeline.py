"""``compress``: the whole job in one call — convert -> finetune -> export -> report, into one folder."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bnnc import defaults
from bnnc.checkpoint import FORMAT, parse
from bnnc.conversion import ConvertOptions, convert_file
from bnnc.data import DataSpec, Normalisation
from bnnc.errors import BnncError, OutputError
from bnnc.events import OnEvent, Stage, emitter
from bnnc.export import ExportResult, export_c, export_onnx, export_openvino
from bnnc.export.csource import c_name, generate
from bnnc.export.lowering import check_running_statistics
from bnnc.formats import torch_load
from bnnc.loading import load_checkpoint
from bnnc.outputs import check_outputs, write_text
from bnnc.planning import PlanRules
from bnnc.reporting import Limits, Report, report
from bnnc.resolve import data_for_model, require_fp32, stated_input_shape
from bnnc.training import (
    FINETUNED_SUFFIX,
    FinetuneConfig,
    FinetuneResult,
    default_output,
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
    onnx: Path | None
    report_files: dict[str, Path]
    finetune: FinetuneResult
    export: ExportResult | None      # the ONNX export
    report: Report
    warnings: tuple[str, ...] = ()   # convert's: the plan's, a guessed normalisation
    openvino: ExportResult | None = None  # the OpenVINO export (.xml and .bin), when asked for
    c: ExportResult | None = None         # the C export (NAME-c/: .h, .c, README.md), when asked for

    @property
    def exported(self) -> list[Path]:
        """Every exported model file, ONNX, OpenVINO and C."""
        return [f for e in (self.export, self.openvino, self.c) if e is not None for f in e.files]


FORMATS = ("onnx", "openvino", "c")


def outputs(model_path: Path, folder: Path, formats: Sequence[str] = ("onnx",)) -> dict[str, Path]:
    """The files ``compress`` writes for ``model_path`` into ``folder``."""
    stem = model_path.stem
    finetuned = default_output(folder / f"{stem}.bnnc")
    files = {"converted": folder / f"{stem}.bnnc", "finetuned": finetuned, "history": history_path_for(finetuned),
             "state": state_path(finetuned), "json": folder / "report.json", "markdown": folder / "report.md",
             "html": folder / "report.html"}
    if "onnx" in formats:
        files["onnx"] = folder / f"{stem}.onnx"
    if "openvino" in formats:
        files.update(openvino=folder / f"{stem}.xml", openvino_bin=folder / f"{stem}.bin")
    if "c" in formats:
        ident = c_name(stem)
        c_folder = folder / f"{stem}-c"
        files.update(c=c_folder / f"{ident}.c", c_h=c_folder / f"{ident}.h", c_readme=c_folder / "README.md")
    return files


def compress(
    model_path: str | os.PathLike[str],
    data: DataSpec,
    folder: str | os.PathLike[str],
    *,
    config: FinetuneConfig | None = None,
    limits: Limits | None = None,
    uint8_input: bool = False,
    float_ops: bool = False,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    trust_model: bool = False,
    rules: PlanRules | None = None,
    options: ConvertOptions | None = None,
    input_shape: Sequence[int] | None = None,
    normalisation: Normalisation | None = None,
    calibration_batches: int = defaults.CALIBRATION_BATCHES,
    teacher: str | os.PathLike[str] | None = None,
    check_samples: int = defaults.CHECK_SAMPLES,
    reference_check: bool = False,
    formats: Sequence[str] = ("onnx",),
    overwrite: bool = False,
    report_options: dict[str, Any] | None = None,
    on_event: OnEvent | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> CompressResult:
    """Convert ``model_path``, fine-tune it on ``data``, export it and report on it, all into ``folder``.

    Every option of the four steps is taken and passed on: the plan (``rules``, ``options``,
    ``input_shape``, ``normalisation``, ``calibration_batches``), fine-tuning (``config``, ``teacher``), export
    (``formats``: any of "onnx", "openvino", "c"; ``uint8_input``, ``float_ops``, ``check_samples``,
    ``reference_check``) and the report
    (``limits``, ``report_options``). ``folder`` is created if its parent exists. Every output is
    checked, and the model and data are loaded, before anything is written: bad input stops the
    run at once with nothing written, not after training. The data is read once and shared by all
    four steps. If a step fails, the files this run created (and the folder, if it made it) are
    removed; outputs it replaced with ``overwrite`` stay replaced. ``on_event`` receives every step's events
    and a :class:`~bnnc.events.Stage` as each step begins (``on_stage``, taking its text, is deprecated).
    """
    event = emitter(on_event, "compress", on_stage=(on_stage, Stage, lambda e: (e.text,)))

    def stage(text: str) -> None:
        event(Stage(text))

    src, out = Path(model_path), Path(folder)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder", "give a folder for -o")
    if not out.parent.is_dir():
        raise OutputError(f"the folder {out.parent} does not exist", "create it first, or choose another -o")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise BnncError(f"unknown export format {', '.join(unknown) or '(none)'}",
                        f"choose from {', '.join(FORMATS)} (comma-separated)")
    if "openvino" in formats:
        from bnnc.export.ov_runtime import openvino_module

        openvino_module()  # missing openvino: said before any work
    if limits is not None:
        from bnnc.export import ov_runtime

        limits.require_openvino(None, ov_runtime.available())  # a gate that can't be measured: said now too
    files = outputs(src, out, formats)
    if out.is_dir():  # (the C export's folder, if not there yet, is made by the export)
        check_outputs([p for p in files.values() if p.parent.is_dir()], (src, data, teacher), overwrite=overwrite)
    loaded = require_fp32(load_checkpoint(src, arch=arch, arch_kwargs=arch_kwargs, trust_model=trust_model))
    check_running_statistics(loaded.model)  # no format exports such a model: said now, not after fine-tuning
    splits = data_for_model(data, loaded, input_shape=stated_input_shape(loaded, input_shape),
                            normalisation=normalisation)
    config = config or FinetuneConfig(epochs=defaults.COMPRESS_EPOCHS)
    if config.distill and teacher is not None:
        load_checkpoint(teacher, arch=arch, arch_kwargs=arch_kwargs, trust_model=trust_model,
                        recorded_arch=(loaded.arch, loaded.arch_kwargs, loaded.arch_named_by_user)
                        if loaded.arch else None)
    made_folder = not out.exists()
    created = [p for p in files.values() if not p.exists()]
    out.mkdir(exist_ok=True)
    try:
        stage(f"convert {src}")
        converted = convert_file(src, files["converted"], arch=arch, arch_kwargs=arch_kwargs, trust_model=trust_model,
                                 rules=rules, options=options, input_shape=input_shape, data=splits,
                                 calibration_batches=calibration_batches, overwrite=overwrite, on_event=event)
        if "c" in files:  # an operation the C export lacks: said now, not after fine-tuning
            c_model = load_checkpoint(converted.output, trust_model=trust_model, allow_arch=arch).model
            generate(c_model, tuple(splits.preprocessing.input_shape), files["c"].stem)
        stage("fine-tune")
        ft = finetune(converted.output, splits, config, files["finetuned"], overwrite=overwrite, teacher=teacher,
                      arch=arch, arch_kwargs=arch_kwargs, trust_model=trust_model, history_path=files["history"],
                      on_event=event)
        stage("export")
        ex = ov = cx = None
        if "onnx" in files:
            ex = export_onnx(ft.output, files["onnx"], data=splits, uint8_input=uint8_input, float_ops=float_ops,
                             check_samples=check_samples, reference_check=reference_check, overwrite=overwrite,
                             trust_model=trust_model)
        if "openvino" in files:
            ov = export_openvino(ft.output, files["openvino"], data=splits, uint8_input=uint8_input,
                                 check_samples=check_samples, overwrite=overwrite, trust_model=trust_model)
        if "c" in files:
            cx = export_c(ft.output, files["c"].parent, name=files["c"].stem, data=splits,
                          check_samples=check_samples, overwrite=overwrite, trust_model=trust_model)
        stage("report")
        rep = report(ft.output, splits, onnx_path=files.get("onnx"), arch=arch,
                     arch_kwargs=arch_kwargs, limits=limits, trust_model=trust_model, on_event=event,
                     **(report_options or {}))
        for kind, render in (("json", rep.to_json), ("markdown", rep.to_markdown), ("html", rep.to_html)):
            write_text(files[kind], render(), overwrite=overwrite)
    except BaseException:
        _remove(created, out if made_folder else None)
        raise
    return CompressResult(out, converted.output, ft.output, ft.history_path, files.get("onnx"),
                          {k: files[k] for k in ("json", "markdown", "html")}, ft, ex, rep, converted.warnings, ov, cx)


def _remove(created: list[Path], folder: Path | None) -> None:
    """Undo a failed run: the files it created, then the folder if it made it and nothing else is there."""
    for path in created:
        path.unlink(missing_ok=True)
    for sub in {p.parent for p in created if p.parent != folder and p.parent.is_dir()}:
        if not any(sub.iterdir()):
            sub.rmdir()
    if folder is not None and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def previous_checkpoint(command: str, folder: Path | None = None) -> Path:
    """The checkpoint the step before ``command`` wrote in ``folder`` (the working directory), for a CI job that
    runs ``bnnc convert model.pt``, ``bnnc finetune --epochs 3``, ``bnnc report`` with no model named: ``finetune``
    takes the converted checkpoint (``*.bnnc``), ``export`` and ``report`` the fine-tuned one
    (``*.finetuned.bnnc``, by ``finetune``'s default name), else the converted one. There must be one: several are
    an error naming them, never a guess."""
    folder = folder or Path.cwd()
    found = sorted(p for p in folder.glob("*.bnnc") if p.is_file() and not p.name.startswith("."))
    finetuned = [p for p in found if p.name.endswith(FINETUNED_SUFFIX)]
    converted = [p for p in found if not p.name.endswith(FINETUNED_SUFFIX)]
    candidates = converted if command == "finetune" else finetuned or converted
    kind = "converted " if command == "finetune" else ""
    if not candidates:
        below = sorted(p.relative_to(folder) for p in folder.glob("*/*.bnnc")
                       if p.is_file() and not p.name.startswith(".") and not p.parent.name.startswith("."))
        fix = (f"pass the one meant: bnnc {command} {below[0]}" if below  # convert writes beside models/net.pt
               else f"pass the model: bnnc {command} MODEL.bnnc (bnnc convert writes one)")
        raise BnncError(f"no MODEL given, and no {kind}bnnc checkpoint in {folder} to take", fix)
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates[:4]) + (", ..." if len(candidates) > 4 else "")
        raise BnncError(f"no MODEL given, and {len(candidates)} {kind}bnnc checkpoints in {folder} ({names})",
                        f"pass the one meant: bnnc {command} MODEL.bnnc")
    return candidates[0]


def recorded_data(model_path: str | os.PathLike[str]) -> Path | None:
    """The data the steps before used on the checkpoint ``model_path`` — fine-tuning's training data, else the data
    ``bnnc convert --data`` calibrated on — for a CI job that names ``--data`` once, to ``convert``. Only a file or
    folder is recorded (a data function is named again: nothing a file says is run); None when there is none, or
    the file is not a bnnc checkpoint (the step that loads it says what is wrong)."""
    path = Path(model_path)
    try:
        obj = torch_load(path, trust_model=False)
        binarized = parse(obj, path).binarized if isinstance(obj, Mapping) and obj.get("format") == FORMAT else None
    except (BnncError, OSError):  # not there, unreadable: the step that loads it says so
        return None
    if binarized is None:
        return None
    for recorded in (binarized.finetune, binarized.calibration):
        if recorded is not None and recorded.data_path:
            return Path(recorded.data_path)
    return None
