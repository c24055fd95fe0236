"""A report document rendered for people: table rows (shared with the terminal), Markdown, an HTML page
with plots. Pure functions of the document's dict; nothing here measures or prints."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _pct(v: float) -> str:
    return f"{v:.2%}"


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


INT8_HEADER = "ORT int8 (static QDQ, calibrated)"


def summary_rows(d: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, FP32, ORT int8, bnnc) rows shared by the terminal, Markdown and HTML renderings. The int8 column is
    ORT's static quantization; a model without convolutions shows dynamic int8 beside it."""
    s, a = d["size"], d["accuracy"]
    rows = [
        ("ONNX size", _kib(s["fp32_onnx_bytes"]),
         _kib(s["int8_onnx_bytes"]) + _dynamic(_kib(s.get("int8_dynamic_onnx_bytes", 0)), s),
         f"{_kib(s['bnnc_onnx_bytes'])} ({s['compression_vs_fp32']:.1f}x smaller than FP32, "
         f"{s['compression_vs_int8']:.1f}x than int8; {_kib(s['theoretical_bytes'])} of it weights and thresholds)"),
        ("Accuracy (ONNX Runtime)", _pct(a["fp32"]),
         f"{_pct(a['int8_onnx'])} ({-a['int8_drop_pt']:+.2f} pt)" + _dynamic(_pct(a.get("int8_dynamic_onnx", 0)), s),
         f"{_pct(a['bnnc_onnx'])} ({-a['drop_pt']:+.2f} pt; PyTorch {_pct(a['binarized_torch'])}, "
         f"same prediction on {_pct(a['onnx_torch_agreement'])})"),
    ]
    for b, lat in d["latency"]["by_batch"].items():
        rows.append((f"Latency, batch {b} ({d['latency']['threads']} threads)", f"{lat['fp32']['median_ms']:.3f} ms",
                     f"{lat['int8']['median_ms']:.3f} ms"
                     + (f"; dynamic {lat['int8_dynamic']['median_ms']:.3f} ms" if "int8_dynamic" in lat else ""),
                     f"{lat['bnnc']['median_ms']:.3f} ms ({lat['speedup_vs_fp32']:.2f}x vs FP32, "
                     f"{lat['speedup_vs_int8']:.2f}x vs int8 {lat['int8_fastest']})"))
    return rows


def _dynamic(value: str, size: dict[str, Any]) -> str:
    return f"; dynamic {value}" if "int8_dynamic_onnx_bytes" in size else ""


OPENVINO_HEADER = ("", "bnnc in OpenVINO (XNOR-popcount, f32)", "FP32 in OpenVINO (CPU default precision)")


def openvino_rows(d: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, bnnc IR, FP32 IR) rows: empty when OpenVINO wasn't measured."""
    ov = d.get("openvino")
    if not ov:
        return []
    if "error" in ov:
        return [("not measured", ov["error"], "")]
    a = ov["accuracy"]
    rows = [("IR size (.xml + .bin)", f"{_kib(ov['bnnc_ir_bytes'])} ({ov['xnor_layers']} XNOR-popcount layers)",
             _kib(ov["fp32_ir_bytes"])),
            ("Accuracy (OpenVINO)", f"{_pct(a['bnnc'])} (same prediction as PyTorch on {_pct(a['torch_agreement'])})",
             _pct(a["fp32_default_precision"]))]
    for b, lat in d["latency"]["by_batch"].items():
        rows.append((f"Latency, batch {b} ({d['latency']['threads']} threads)",
                     f"{lat['bnnc_openvino']['median_ms']:.3f} ms ({lat['openvino_speedup_vs_fp32']:.2f}x vs ORT "
                     f"FP32, {lat['openvino_speedup_vs_int8']:.2f}x vs ORT int8, "
                     f"{lat['openvino_speedup_vs_fastest_alternative']:.2f}x vs the fastest alternative)",
                     f"{lat['fp32_openvino']['median_ms']:.3f} ms"))
    return rows


LAYER_HEADER = ("layer", "type", "precision", "params", "bits", "MACs", "FP32 bytes", "bnnc bytes", "FP32 ÷ bnnc",
                "drop alone (pt)")
LAYER_TEXT_COLUMNS = 3  # the rest are numbers (right-aligned)


def layer_rows(d: dict[str, Any], size: Callable[[int], str] = "{:,}".format) -> list[tuple[str, ...]]:
    """One row a layer: its plan, its size in FP32 against what the bnnc export stores for it (``size`` writes
    bytes: exact by default, KiB/MiB in a terminal), and its accuracy drop binarized alone (``convert
    --sensitivity``; — where not measured)."""
    rows: list[tuple[str, ...]] = []
    for la in d["layers"]:
        fp32, stored = la.get("fp32_bytes"), la.get("bytes")
        ratio = f"{fp32 / stored:.1f}x" if fp32 and stored else "—"
        drop = la.get("drop_alone_pt")
        rows.append((la["name"], la["kind"], la["precision"], f"{la['params']:,}", str(la["bits"]), f"{la['macs']:,}",
                     size(fp32) if fp32 is not None else "—", size(stored) if stored is not None else "—", ratio,
                     f"{drop:.2f}" if drop is not None else "—"))
    return rows


C_HEADER = ("", "bnnc as C (XNOR-popcount, 1 thread)")


def c_rows(d: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, value) rows of the C model: empty when it wasn't measured (no C compiler)."""
    c = d.get("c")
    if not c:
        return []
    if "error" in c:
        return [("not measured", c["error"])]

    def built(o: dict[str, Any] | None) -> str:
        return (f"flash {_kib(o['flash'])} (text {o['text']:,} + data {o['data']:,}), RAM {_kib(o['ram'])} "
                f"(bss {o['bss']:,}); {o['compiler']} {o['flags']}") if o else "not compiled"
    rows = [("Weights and parameters (const)", _kib(c["weight_bytes"])),
            ("Object (host)", built(c["object"]))]
    if c.get("cortex_m4"):
        rows.append(("Object (Cortex-M4)", built(c["cortex_m4"])))
    rows.append(("Accuracy (C)", f"{_pct(c['accuracy'])} (same prediction as PyTorch on {_pct(c['torch_agreement'])})"))
    speed = ""
    if "speedup_vs_fp32" in c:
        speed = (f" ({c['speedup_vs_fp32']:.2f}x vs ORT FP32, {c['speedup_vs_int8']:.2f}x vs ORT int8"
                 + (f", {c['speedup_vs_openvino']:.2f}x vs bnnc in OpenVINO" if "speedup_vs_openvino" in c else "")
                 + f", those at {d['latency']['threads']} threads)")
    rows.append(("Latency, batch 1", f"{c['latency_batch1_ms']:.3f} ms{speed}; {c['compiler']} {c['flags']}"))
    return rows


def render_markdown(d: dict[str, Any]) -> str:
    verdict = "all checks passed" if d["passed"] else "**checks FAILED**"
    lines = [f"# bnnc report: {Path(d['model']['path']).name}", "",
             f"Data: {d['data']['source']} ({d['data']['samples']:,} samples). bnnc {d['bnnc_version']}, "
             f"{d['machine']['cpus']} CPUs, ONNX Runtime {d['machine']['onnxruntime']}. "
             f"{verdict if d['checks'] else ''}",
             "", f"| | FP32 | {INT8_HEADER} | bnnc |", "|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in summary_rows(d)]
    if openvino_rows(d):
        lines += ["", f"## OpenVINO {d['openvino']['version']}", "", "| " + " | ".join(OPENVINO_HEADER) + " |",
                  "|---|---|---|"]
        lines += [f"| {r[0]} | {r[1]} | {r[2]} |" for r in openvino_rows(d)]
    if c_rows(d):
        lines += ["", "## C", "", "| " + " | ".join(C_HEADER) + " |", "|---|---|"]
        lines += [f"| {r[0]} | {r[1]} |" for r in c_rows(d)]
    if d["checks"]:
        lines += ["", "## Checks", "", "| check | value | limit | result |", "|---|---|---|---|"]
        for c in d["checks"]:
            mark = "✅ pass" if c["passed"] else "❌ FAIL"
            lines.append(f"| {c['name']} | {_value(c)} | {c['op']} {c['limit']:g} | {mark} |")
    lines += ["", "## Layers", "", "| " + " | ".join(LAYER_HEADER) + " |",
              "|" + "---|" * LAYER_TEXT_COLUMNS + "---:|" * (len(LAYER_HEADER) - LAYER_TEXT_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in layer_rows(d)]
    t = d["totals"]
    lines += ["", f"{t['binary_params']:,} of {t['params']:,} weights binary; {t['binary_mac_share']:.1%} of "
              f"multiply-accumulates XNOR-popcount, {t['binary_weight_mac_share']:.1%} with binary weights."]
    ft = d["finetune"]
    if ft:
        n = len(ft["epochs"])
        when = (f"at epoch {ft['best_epoch']}" if ft["best_epoch"] else
                "before the first epoch (no epoch beat the start)")
        lines += ["", "## Fine-tuning", "", f"{n} epoch{'s' if n != 1 else ''} in {ft['seconds']:.0f} s; best "
                  f"validation accuracy {_pct(ft['best_val_accuracy'])} {when}.", "",
                  "| epoch | val accuracy | train loss | seconds |", "|---:|---:|---:|---:|"]
        lines += [f"| {e['epoch']} | {_pct(e['val_accuracy'])} | {e['train_loss']:.4f} | {e['seconds']:.1f} |"
                  for e in ft["epochs"]]
    return "\n".join(lines) + "\n"


def _figure_png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(d: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs made with matplotlib: sizes, latencies, accuracy per epoch (when fine-tuned)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    names = ["FP32", "ORT int8", "bnnc"]
    colors = ["#999999", "#5b8bd0", "#2ca25f"]
    s = d["size"]
    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.barh(names, [s[k] / 1024 for k in ("fp32_onnx_bytes", "int8_onnx_bytes", "bnnc_onnx_bytes")], color=colors)
    ax.set_xlabel("ONNX file size (KiB)")
    ax.invert_yaxis()
    out["size"] = _figure_png(fig)
    plt.close(fig)
    batches = list(d["latency"]["by_batch"])
    fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 2.6), squeeze=False)
    for ax, b in zip(axes[0], batches, strict=True):
        lat = d["latency"]["by_batch"][b]
        ax.barh(names, [lat[k]["median_ms"] for k in ("fp32", "int8", "bnnc")], color=colors,
                xerr=[[lat[k]["median_ms"] - lat[k]["q1_ms"] for k in ("fp32", "int8", "bnnc")],
                      [lat[k]["q3_ms"] - lat[k]["median_ms"] for k in ("fp32", "int8", "bnnc")]])
        ax.set_xlabel(f"ms per call, batch {b} (median, IQR)")
        ax.invert_yaxis()
    fig.subplots_adjust(wspace=0.45)
    out["latency"] = _figure_png(fig)
    plt.close(fig)
    ft = d["finetune"]
    if ft and ft["epochs"]:
        fig, ax = plt.subplots(figsize=(5, 2.8))
        ax.plot([e["epoch"] for e in ft["epochs"]], [e["val_accuracy"] * 100 for e in ft["epochs"]], "o-",
                color=colors[2], label="binarized (validation)")
        ax.axhline(d["accuracy"]["fp32"] * 100, color=colors[0], linestyle="--", label="FP32")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.legend(loc="lower right")
        out["accuracy"] = _figure_png(fig)
        plt.close(fig)
    return out


def render_html(d: dict[str, Any]) -> str:
    """One self-contained page: the Markdown's tables as HTML, and the plots inlined as PNG."""
    e = html.escape

    def table(header: list[str], rows: list[list[str]], row_class: list[str] | None = None) -> str:
        head = "".join(f"<th>{e(h)}</th>" for h in header)
        body = "".join(
            f"<tr class='{(row_class or [''] * len(rows))[i]}'>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>"
            for i, r in enumerate(rows))
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    parts = [f"<h1>bnnc report: {e(Path(d['model']['path']).name)}</h1>",
             f"<p>Data: {e(d['data']['source'])} ({d['data']['samples']:,} samples). bnnc {e(d['bnnc_version'])}, "
             f"{d['machine']['cpus']} CPUs, ONNX Runtime {e(d['machine']['onnxruntime'])}.</p>",
             table(["", "FP32", INT8_HEADER, "bnnc"], [list(r) for r in summary_rows(d)])]
    if openvino_rows(d):
        parts += [f"<h2>OpenVINO {e(d['openvino']['version'])}</h2>",
                  table(list(OPENVINO_HEADER), [list(r) for r in openvino_rows(d)])]
    if c_rows(d):
        parts += ["<h2>C</h2>", table(list(C_HEADER), [list(r) for r in c_rows(d)])]
    if d["checks"]:
        rows = [[c["name"], _value(c), f"{c['op']} {c['limit']:g}", "pass" if c["passed"] else "FAIL"]
                for c in d["checks"]]
        parts += ["<h2>Checks</h2>", table(["check", "value", "limit", "result"], rows,
                                           ["pass" if c["passed"] else "fail" for c in d["checks"]])]
    figs = plots(d)
    parts += ["<h2>Size and speed</h2>"] + [f"<img alt='{k}' src='data:image/png;base64,{v}'>" for k, v in figs.items()]
    parts += ["<h2>Layers</h2>", table(list(LAYER_HEADER), [list(row) for row in layer_rows(d)])]
    style = ("body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
             "tr.fail td{background:#fdd}tr.pass td{background:#efe}img{display:block;margin:1em 0}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>bnnc report</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}</body></html>\n")


def _value(check: dict[str, Any]) -> str:
    """A check's measured value as the Markdown and HTML tables show it ("not measured": it failed for that)."""
    return "not measured" if check["value"] is None else f"{check['value']:.4g}"
