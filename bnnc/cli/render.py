"""Everything the CLI shows a person, with rich: the plan and totals of ``convert``, fine-tuning progress
and results, an export's size and checks, a report's tables. Commands parse arguments, call the library and
hand its results here; ``--json`` output bypasses this module."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    from bnnc.conversion import ConversionResult
    from bnnc.events import Stage
    from bnnc.export import ExportResult
    from bnnc.reporting import Report
    from bnnc.training import Event, FinetuneResult


def status_line(event: Any, prefix: str = "") -> str:
    """One line for a spinner's status: what a step is doing now."""
    from bnnc.events import Calibrating, MeasuringLayer, Stage, Warned

    if isinstance(event, Stage):
        return prefix + event.text
    if isinstance(event, MeasuringLayer):
        return f"{prefix}measuring with {event.name} binarized"
    if isinstance(event, Calibrating):
        return f"{prefix}calibrating thresholds: batch {event.done}/{event.total}"
    if isinstance(event, Warned):
        return f"{prefix}warning: {event.text}"
    return prefix + str(event)


def size(n: float) -> str:
    """Bytes in B, KiB, MiB or GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def converted(result: ConversionResult, console: Console) -> None:
    """The plan as a table, then the totals."""
    s = result.summary
    table = Table(title="Precision plan (execution order)", title_justify="left")
    for col, kw in (("Layer", {"no_wrap": True}), ("Type", {}), ("Weight shape", {}),
                    ("Params", {"justify": "right"}), ("MACs", {"justify": "right"}),
                    ("Precision", {"no_wrap": True}), ("Why", {"overflow": "fold"})):
        table.add_column(col, **kw)
    colors = {"fp32": "yellow", "weights": "cyan", "binary": "green", "int8": "magenta"}
    for layer in s.plan.layers:
        p = layer.precision.value
        table.add_row(
            layer.name, layer.kind, "x".join(map(str, layer.weight_shape)), f"{layer.params:,}",
            f"{layer.macs:,}", f"fp32 → [{colors[p]}]{p}[/]", layer.reason,
        )
    console.print(table)
    shape = ",".join(map(str, s.plan.input_shape)) + (" (probed)" if s.plan.input_shape_inferred else "")
    totals = Table.grid(padding=(0, 2))
    totals.add_column(style="bold")
    totals.add_column()
    totals.add_row("FP32 size", size(s.fp32_bytes))
    totals.add_row("Binarized size", f"{size(s.binarized_bytes)}  " + (
        "(what the ONNX export stores: 1-bit weights, folded thresholds, int8 and FP32 layers; the file adds its "
        "graph)"
        if s.size_from_export else "(estimated: 1 bit per binarized weight, rest FP32; the model didn't export)"))
    totals.add_row("Compression", f"{s.compression:.1f}x")
    totals.add_row("Binary weights", f"{s.binary_weights:,} of {s.binary_weights + s.kept_weights:,}")
    totals.add_row("MACs binary", f"{s.binary_mac_share:.1%} XNOR-popcount, "
                                  f"{s.binary_weight_mac_share:.1%} with binary weights")
    totals.add_row("Input shape", shape)
    totals.add_row("First/last layers", "from the model's graph (torch.fx)" if s.plan.fallback is None
                   else f"[yellow]by execution order[/]: {s.plan.fallback}; check the plan, or set --first/--last")
    cal = result.calibration
    totals.add_row("Thresholds", f"calibrated on {cal.samples:,} samples of {cal.data}" if cal
                   else "not calibrated (0 = plain sign, no int8 input ranges); pass --data, or bnnc finetune "
                        "calibrates them")
    console.print(totals)
    if result.sensitivity is not None:
        console.print(sensitivity_table(result))


def sensitivity_table(result: ConversionResult) -> Table:
    sens = result.sensitivity
    assert sens is not None
    kept = set(result.auto.kept) if result.auto else set()
    table = Table(title=f"Sensitivity: each layer binarized alone (FP32 {sens.fp32_accuracy:.2%} on "
                        f"{sens.samples:,} validation samples)", title_justify="left")
    for col in ("Layer", "As planned", "Params", "Saves", "Accuracy", "Drop"):
        table.add_column(col, justify="left" if col in ("Layer", "As planned") else "right")
    for s in sorted(sens.layers, key=lambda s: -s.accuracy_drop):
        planned = "fp32 (kept)" if s.name in kept else s.precision.value
        table.add_row(s.name, planned, f"{s.params:,}", size(s.bytes_saved), f"{s.accuracy:.2%}",
                      f"{s.accuracy_drop * 100:+.2f} pt")
    if result.auto:
        a = result.auto
        table.caption = (f"automatic plan: {size(a.bytes)}, accuracy {a.accuracy:.2%} "
                         f"({a.accuracy_drop * 100:.2f} pt below FP32, thresholds calibrated, before fine-tuning)")
    return table


class FinetuneProgress:
    """Turns finetune events into a progress bar and one line per epoch, on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console, transient=True,
        )
        self.task: Any = None
        self.label = ""
        self.warned: set[str] = set()  # warnings printed as they came: not again with the result

    def __enter__(self) -> FinetuneProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def _bar(self, label: str, done: int, total: int, info: str = "") -> None:
        """One bar at a time: a new label replaces the previous bar."""
        if self.task is None or label != self.label:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task, self.label = self.progress.add_task(label, total=total, info=info), label
        self.progress.update(self.task, completed=done, total=total, info=info)

    def __call__(self, event: Event | Stage) -> None:
        from bnnc.events import Calibrating, Stage, Warned
        from bnnc.training import BatchEnd, EpochEnd, Started

        if isinstance(event, Stage):
            self.console.print(f"[bold]{event.text}[/]")
        elif isinstance(event, Warned):
            self.warned.add(event.text)
            self.console.print(f"[yellow]warning:[/] {event.text}")
        elif isinstance(event, Calibrating):
            what = "recalibrating BatchNorm and thresholds" if event.batchnorm else "calibrating thresholds"
            self._bar(what, event.done, event.total)
        elif isinstance(event, Started):
            fp32 = f"{event.fp32_accuracy:.2%}" if event.fp32_accuracy is not None else "unknown"
            recal = "" if event.recalibrated_accuracy is None else (
                f", after recalibration {event.recalibrated_accuracy:.2%}" + (
                    " (lower: training starts from the converted model)"
                    if event.recalibrated_accuracy < event.converted_accuracy else ""))
            self.console.print(f"FP32 {fp32}, binarized {event.converted_accuracy:.2%}{recal} "
                               f"({event.val_samples:,} validation samples; training on {event.train_samples:,} "
                               f"on {event.device})")
            if event.start_epoch > 1:
                self.console.print(f"resuming at epoch {event.start_epoch}")
            if event.dropped_samples:
                self.console.print(f"the last batch of each epoch, {event.dropped_samples} sample(s), is left out: "
                                   "BatchNorm can't train on a batch of one (recorded in the history)")
        elif isinstance(event, BatchEnd):
            self._bar(f"epoch {event.epoch}", event.batch, event.batches,
                      f"loss {event.loss:.4f}  acc {event.accuracy:.2%}  {event.samples_per_s:,.0f} samples/s")
        elif isinstance(event, EpochEnd):
            r = event.record
            star = "  [green]★ best[/]" if event.best else ""
            self.console.print(
                f"epoch {r.epoch}: train loss {r.train_loss:.4f} acc {r.train_accuracy:.2%} │ val loss "
                f"{r.val_loss:.4f} acc {r.val_accuracy:.2%} │ lr {r.lr:.2g} │ flips {r.flip_share:.2%} │ "
                f"{r.seconds:.1f} s{star}"
            )


def finetuned(result: FinetuneResult, console: Console) -> None:
    """The accuracy before and after, against FP32."""
    table = Table(title="Fine-tuning", title_justify="left")
    table.add_column("model")
    table.add_column("accuracy", justify="right")
    table.add_column("vs FP32", justify="right")
    fp32 = result.fp32_accuracy

    def row(name: str, acc: float | None) -> None:
        if acc is None:
            return
        drop = f"{(acc - fp32) * 100:+.2f} pt" if fp32 is not None else ""
        table.add_row(name, f"{acc:.2%}", drop)

    row("FP32 source", fp32)
    row("binarized, as converted", result.converted_accuracy)
    row("after BN/threshold recalibration", result.recalibrated_accuracy)
    row(f"fine-tuned (best: epoch {result.best_epoch})" if result.best_epoch else
        "fine-tuned (no epoch beat the start: start kept)", result.best_accuracy)
    console.print(table)
    console.print(f"wrote {result.output} and {result.history_path} in {result.seconds:.0f} s")


def exported(result: ExportResult, console: Console) -> None:
    """Size, structure and the parity check, as a short table."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    if result.format == "c" and result.c is not None:
        c = result.c
        obj = c.get("object")
        built = (f"; compiled ({obj['compiler']} {obj['flags']}): flash {size(obj['flash'])}, RAM {size(obj['ram'])}"
                 if obj else "")
        grid.add_row("C source", f"{c['name']}.h + {c['name']}.c: {size(c['weight_bytes'])} of weights and parameters "
                                 f"(const, flash), {size(c['ram_bytes'])} of static buffers (RAM){built}")
    else:
        what = "OpenVINO IR" if result.format == "openvino" else "ONNX file"
        grid.add_row(what, f"{size(result.onnx_bytes)}  ({result.size_ratio:.2f}x the "
                           f"{size(result.theoretical_bytes)} of data it stores — 1-bit weights, folded "
                           "thresholds, FP32 layers; the rest is the graph)")
    if result.format == "c":
        grid.add_row("Compute", f"{result.binary_nodes} binary layers as XNOR-popcount on packed bits, "
                                "thresholds folded; portable C, SIMD where the compiler targets it")
    elif result.format == "openvino":
        grid.add_row("Compute", f"{result.xnor_layers} of {result.binary_nodes} binary layers as XNOR-popcount "
                                "BinaryConvolution; compile with INFERENCE_PRECISION_HINT=f32 for these results")
    else:
        grid.add_row("Compute", f"{result.mode}: {result.binary_nodes} binary layers, {result.fused_chains} with "
                                "BatchNorm/scale/ReLU folded into integer thresholds")
    if result.format == "c":
        grid.add_row("Input", "NAME_predict: the FP32 model's input" + (
            "; NAME_predict_u8: raw uint8 pixels (preprocessing inside)" if result.uint8_input else ""))
    else:
        grid.add_row("Input", "raw uint8 pixels (preprocessing inside)" if result.uint8_input
                     else "the FP32 model's input (drop-in replacement)")
    for p in result.parity:
        verdict = "[green]match[/]" if p.ok else "[red]MISMATCH[/]"
        ties = f", {p.at_ties} at float rounding ties" if p.at_ties else ""
        grid.add_row(f"Check ({p.runtime})", f"{verdict}: argmax agrees on {p.argmax_agreement:.2%} of {p.samples}; "
                     f"max relative logit difference {p.max_rel_diff:.1e}{ties}; inputs: {p.inputs}")
    if not result.parity:
        why = "no C compiler" if result.c is not None and result.c.get("checked") is False else "--no-check"
        grid.add_row("Check", f"[yellow]skipped[/] ({why})")
    for note in result.notes:
        grid.add_row("Note", note)
    console.print(grid)


def report(rep: Report, console: Console) -> None:
    """The summary table, the checks and the layers, for a person."""
    from bnnc.reporting import (
        C_HEADER,
        INT8_HEADER,
        LAYER_HEADER,
        LAYER_TEXT_COLUMNS,
        OPENVINO_HEADER,
        c_rows,
        layer_rows,
        openvino_rows,
        summary_rows,
    )

    d = rep.to_dict()
    table = Table(title=f"bnnc report: {Path(d['model']['path']).name} on {d['data']['samples']:,} samples",
                  title_justify="left")
    for col in ("", "FP32", INT8_HEADER, "bnnc"):
        table.add_column(col, overflow="fold")
    for row in summary_rows(d):
        table.add_row(*row)
    console.print(table)
    if openvino_rows(d):
        ov = Table(title=f"OpenVINO {d['openvino']['version']}", title_justify="left")
        for header in OPENVINO_HEADER:
            ov.add_column(header, overflow="fold")
        for ov_row in openvino_rows(d):
            ov.add_row(*ov_row)
        console.print(ov)
    if c_rows(d):
        c_table = Table(title="C", title_justify="left")
        for header in C_HEADER:
            c_table.add_column(header, overflow="fold")
        for c_row in c_rows(d):
            c_table.add_row(*c_row)
        console.print(c_table)
    rows = layer_rows(d, size)
    measured = any(la.get("drop_alone_pt") is not None for la in d["layers"])
    for title, columns in (("Layers", range(6)), ("Size by layer", (0, 6, 7, 8, 9) if measured else (0, 6, 7, 8))):
        table = Table(title=title, title_justify="left")
        for i in columns:
            table.add_column(LAYER_HEADER[i], justify="left" if i < LAYER_TEXT_COLUMNS else "right")
        for layer_row in rows:
            table.add_row(*(layer_row[i] for i in columns))
        console.print(table)
    if d["finetune"]:
        ft = d["finetune"]
        n = len(ft["epochs"])
        console.print(f"fine-tuned {n} epoch{'s' if n != 1 else ''} in {ft['seconds']:.0f} s; best validation accuracy "
                      f"{ft['best_val_accuracy']:.2%} " + (f"at epoch {ft['best_epoch']}" if ft["best_epoch"] else
                                                           "before the first epoch (no epoch beat the start)"))
    for c in rep.checks:
        mark = "[green]pass[/]" if c.passed else "[red]FAIL[/]"
        console.print(f"check {mark}: {c.describe()}")
