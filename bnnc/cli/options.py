"""Options that several commands take, declared once: the same name, help text and metavar everywhere.

``bnnc compress`` takes the options of every step it runs; declaring them here keeps its help and
the steps' in step. Flags get no ``<bool>`` metavar, and help text escapes rich markup (``\\[``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from bnnc import defaults
from bnnc.cli.choices import (
    BatchNormChoice,
    BinarizeChoice,
    OptimizerChoice,
    PrecisionChoice,
    ScheduleChoice,
    SteChoice,
)


def finite(value: float | None) -> float | None:
    """Option callback: NaN and infinities pass click's range checks, so refuse them here."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def flag(*names: str, help: str) -> Any:  # noqa: A002 - typer's own keyword
    """A boolean option shown without a ``<bool>`` metavar."""
    return typer.Option(*names, help=help, metavar="")


# ----------------------------------------------------------------------------- model files
Arch = Annotated[Optional[str], typer.Option(
    help="Architecture of a plain state dict: pkg.module:factory or path/to/file.py:factory (a class or a function "
         "returning the model). "
         "Naming it also allows a checkpoint that records this factory to call it (see the README's Security).")]
ArchKwargs = Annotated[Optional[str], typer.Option(
    help="JSON keyword arguments for --arch, e.g. '{\"num_classes\": 10}'.")]
TrustModel = Annotated[bool, flag("--trust-model", help="Allow loading pickled models. This RUNS CODE from the "
                                                        "file: only for files you trust.")]
InputShape = Annotated[Optional[str], typer.Option(help="Per-sample input shape, e.g. 1,28,28 (default: recorded in "
                                                        "the checkpoint, else the data's, else probed).")]
Mean = Annotated[Optional[str], typer.Option(
    help="Mean the model's training inputs were normalised with: one per channel (e.g. 0.485,0.456,0.406) or one "
         "for all, in pixels/255 for uint8 data (as torchvision's Normalize) \\[default: the training data's].",
    metavar="M[,M,M]")]
Std = Annotated[Optional[str], typer.Option(
    help="Std the model's training inputs were normalised with (goes with --mean) \\[default: the training "
         "data's].", metavar="S[,S,S]")]
Force = Annotated[bool, flag("--force", help="Overwrite existing outputs (never an input).")]

# ----------------------------------------------------------------------------- the plan (convert)
First = Annotated[Optional[PrecisionChoice], typer.Option(help="Precision of the first layers (default: weights, "
                                                              "unless tiny).")]
Last = Annotated[Optional[PrecisionChoice], typer.Option(help="Precision of the last layers (default: fp32).")]
Keep = Annotated[Optional[list[str]], typer.Option(help="Keep layers matching this glob FP32 (repeatable).",
                                                   metavar="GLOB")]
Binary = Annotated[Optional[list[str]], typer.Option(help="Make layers matching this glob fully binary (repeatable).",
                                                     metavar="GLOB")]
Weights = Annotated[Optional[list[str]], typer.Option(help="Binary weights, real-valued input, for layers matching "
                                                           "this glob (repeatable).", metavar="GLOB")]
Int8 = Annotated[Optional[list[str]], typer.Option("--int8", help="8 bits for layers matching this glob: int8 "
                                                  "weights, uint8 input calibrated on --data (repeatable).",
                                                  metavar="GLOB")]
MinParams = Annotated[int, typer.Option(help="Hidden layers with fewer weights stay FP32.", min=0)]
MinFanIn = Annotated[int, typer.Option(help="Layers whose outputs each sum fewer inputs stay FP32 (narrow "
                                            "pointwise convs of mobile nets).", min=0)]
Scale = Annotated[bool, flag("--scale/--no-scale", help="Per-output-channel scale alpha (init mean |W|).")]
Threshold = Annotated[bool, flag("--threshold/--no-threshold", help="Per-channel input threshold beta: "
                                                                    "binarize(x - beta).")]
Binarize = Annotated[BinarizeChoice, typer.Option(help="Activation binarization at train time.")]
CalibrationBatches = Annotated[int, typer.Option(help="Batches of 256 training samples the thresholds are "
                                                      "calibrated on.", min=1)]

# ----------------------------------------------------------------------------- fine-tuning
LearningRate = Annotated[Optional[float], typer.Option("--lr", help="Learning rate (default: 2e-3, for each "
                                                                    "optimizer; adam's was 1e-3); the latent "
                                                                    "weights' is --latent-lr's unless that is 0.",
                                                       min=0, max=10, callback=finite)]
Optimizer = Annotated[OptimizerChoice, typer.Option(help="adam, adamax, or the paper's shift-based AdaMax.")]
Schedule = Annotated[ScheduleChoice, typer.Option(help="Learning-rate schedule.")]
WeightDecay = Annotated[float, typer.Option(help="Weight decay.", min=0, max=1, callback=finite)]
Distill = Annotated[bool, flag("--distill/--no-distill", help="Distil from the FP32 source model.")]
Temperature = Annotated[float, typer.Option(help="Distillation temperature.", min=0.01, max=100, callback=finite)]
DistillWeight = Annotated[float, typer.Option(help="Weight of the distillation loss (0..1).", min=0, max=1,
                                              callback=finite)]
Teacher = Annotated[Optional[Path], typer.Option(help="Teacher model (default: the FP32 model the checkpoint was "
                                                      "converted from); a state dict takes --arch or the recorded "
                                                      "architecture.")]
GlorotLr = Annotated[bool, flag("--glorot-lr", help="The paper's per-layer Glorot learning-rate scaling.")]
BatchNorm = Annotated[BatchNormChoice, typer.Option("--bn", help="BatchNorm kind: standard or the paper's "
                                                                 "shift-based (AP2).")]
Ste = Annotated[SteChoice, typer.Option(help="The activations' gradient: hardtanh (the paper's 1_{|x|<=1}), "
                                               "approxsign (Bi-Real Net's 2-2|x|) or ede (IR-Net's error decay "
                                               "estimator: k t (1 - tanh(t x)^2), t from 0.1 to 10 over the run).")]
TwoStep = Annotated[bool, flag("--two-step/--no-two-step", help="Train binary activations with real weights for "
                                                                "the first half of the epochs, then binary weights.")]
BnReestimate = Annotated[bool, flag("--bn-reestimate/--no-bn-reestimate", help="Re-estimate BatchNorm statistics "
                                                                              "on training data before each "
                                                                              "validation.")]
Warmup = Annotated[float, typer.Option(help="Share of the steps with a linear learning-rate warm-up.", min=0,
                                       max=0.99, callback=finite)]
LatentLr = Annotated[float, typer.Option(help="Each binary layer's latent weights learn at this share of their mean "
                                              "|W| (a step the same size relative to every layer's weights); 0: "
                                              "the global --lr.", min=0, max=1e3, callback=finite)]
EqualizeLatent = Annotated[bool, flag("--equalize-latent/--no-equalize-latent", help="Rescale each output channel's "
                                      "latent weights to their layer's mean |W| before training (the signs, so the "
                                      "model, unchanged): the same push then flips a weight in any channel.")]
Bop = Annotated[bool, flag("--bop/--no-bop", help="Train the binary weights with Bop's sign flips instead of latent "
                                                  "weights (Helwegen et al. 2019, with a scale-free threshold); "
                                                  "--latent-lr then doesn't apply.")]
BopGamma = Annotated[float, typer.Option(help="Bop: rate of the gradient's moving averages (the schedule scales "
                                              "it).", min=0, max=1, callback=finite)]
BopThreshold = Annotated[float, typer.Option(help="Bop: a weight flips where its averaged gradient over its root "
                                                  "mean square pushes across zero by more than this.", min=0, max=1,
                                             callback=finite)]
Recalibrate = Annotated[bool, flag("--recalibrate/--no-recalibrate", help="Re-estimate BatchNorm statistics and "
                                                                          "thresholds before training.")]
BatchSize = Annotated[Optional[int], typer.Option(
    help=f"Fine-tuning batch size; or `batch_size` in the config file \\[default: {defaults.BATCH_SIZE}].", min=1,
    max=1 << 20)]
Workers = Annotated[int, typer.Option(help="DataLoader worker processes.", min=0, max=64)]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Amp = Annotated[bool, flag("--amp/--no-amp", help="bfloat16 autocast for the FP32 layers on a GPU (binary layers "
                                                  "always compute in float32).")]
Seed = Annotated[int, typer.Option(help="Seed: a CPU run is bit-for-bit repeatable.", min=0, max=2**63 - 1)]

# ----------------------------------------------------------------------------- export
FloatOps = Annotated[bool, flag("--float", help="Compute +-1 as float tensors, for runtimes without integer "
                                                "kernels (weights still stored at 1 bit).")]
CheckSamples = Annotated[int, typer.Option(help="Samples the export check runs on.", min=1, max=20_000)]
Reference = Annotated[bool, flag("--reference", help="Also check with onnx.reference (a second, slow runtime).")]

# ----------------------------------------------------------------------------- report and the CI gate
MaxAccuracyDrop = Annotated[Optional[float], typer.Option(
    help="Fail (exit 3) if FP32 accuracy minus bnnc ONNX accuracy exceeds this, in points.", min=0, max=100,
    callback=finite)]
MinCompression = Annotated[Optional[float], typer.Option(
    help="Fail (exit 3) if FP32 ONNX bytes / bnnc ONNX bytes is below this.", min=0, callback=finite)]
MinSpeedup = Annotated[Optional[float], typer.Option(
    help="Fail (exit 3) if FP32 / bnnc ORT latency is below this at any batch size.", min=0, callback=finite)]
MinOpenvinoSpeedup = Annotated[Optional[float], typer.Option(
    help="Fail (exit 3) if FP32 (ORT) / bnnc OpenVINO IR latency is below this at any batch size: the gate for "
         "a pipeline that deploys the IR.", min=0, callback=finite)]
MaxParityMismatch = Annotated[Optional[float], typer.Option(
    help="Fail (exit 3) if the share of samples predicted differently by the bnnc ONNX model and the "
         "PyTorch model exceeds this (0..1).", min=0, max=1, callback=finite)]
ConfigFile = Annotated[Optional[Path], typer.Option(
    "--config", help="Options file (default: ./bnnc.toml, or \\[tool.bnnc] in ./pyproject.toml); the command "
                     "line wins.")]
Batch = Annotated[Optional[int], typer.Option(help="The larger batch size timed; batch 1 is always timed "
                                                   f"\\[default: {defaults.REPORT_BATCH}].", min=1, max=1 << 16)]
Threads = Annotated[Optional[int], typer.Option(help="ONNX Runtime threads \\[default: all cores].", min=1,
                                                max=256)]
Samples = Annotated[Optional[int], typer.Option(help="Evaluate on the first N test samples \\[default: all].", min=1,
                                                max=2**31)]


def taken(command: str, err: Any) -> Path:
    """The checkpoint ``command`` takes when no MODEL is named (the previous step's, in the working directory),
    said on stderr so a CI log shows which."""
    from bnnc.pipeline import previous_checkpoint
    from bnnc.training import FINETUNED_SUFFIX

    model = previous_checkpoint(command)
    kind = "fine-tuned" if model.name.endswith(FINETUNED_SUFFIX) else "converted"
    err.print(f"{command}: {model.name} (the {kind} checkpoint here; name MODEL to take another)", soft_wrap=True)
    return model


def data_taken(command: str, model: Path, err: Any) -> Path:
    """The data ``command`` takes when neither ``--data`` nor the config file names any: the data the steps before
    used on ``model`` (see :func:`bnnc.pipeline.recorded_data`), said on stderr; without it, one error line (a MODEL
    that isn't there or can't be read is that line, not "no data")."""
    from bnnc.errors import BnncError
    from bnnc.formats import check_readable
    from bnnc.pipeline import recorded_data

    check_readable(model)
    data = recorded_data(model)
    need = "training" if command == "finetune" else "evaluation"
    if data is None:
        raise BnncError(f"no {need} data", "pass --data, or set data in bnnc.toml (or give bnnc convert --data: "
                        "the steps after take it)")
    if not data.exists():
        raise BnncError(f"no {need} data given, and {data}, which {model.name} records, is not there",
                        "pass --data")
    return _said(command, model, data, err)


def data_for_check(model: Path, err: Any) -> Path | None:
    """``export``'s check data when none is named: the data ``model`` records, if still there (said on stderr);
    else None, and the check runs on seeded random inputs."""
    from bnnc.pipeline import recorded_data

    data = recorded_data(model)
    return _said("export", model, data, err) if data is not None and data.exists() else None


def _said(command: str, model: Path, data: Path, err: Any) -> Path:
    """``data``, taken from what ``model`` records, said on stderr so a CI log shows which."""
    err.print(f"{command}: data {data} (recorded in {model.name}; pass --data to take other)", soft_wrap=True)
    return data
