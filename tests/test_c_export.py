"""``--format c``: the generated C compiled with the machine's compiler and run against torch."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import families
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from archs import (
    CBAM,
    Activations,
    AdaptiveMax,
    Branches,
    Cumulative,
    FunctionalNet,
    Recurrent,
    Reductions,
    Resized,
    Slices,
    TokenMLP,
    Waveform,
    conv1d_net,
    grouped_net,
    norms_net,
    padding_modes_net,
)
from conftest import PRE, learnable_npz
from families import FAMILIES
from test_export import binarized
from test_export_fuzz import random_net
from torch import nn

from bnnc.export import ExportError, export_c
from bnnc.export import csource as csource_module
from bnnc.export.csource import generate
from bnnc.export.ctoolchain import CORTEX_M4, compile_library, find_compiler, object_size
from bnnc.export.parity import parity_of
from bnnc.layers import binary_layers
from bnnc.planning import PlanRules, Precision

pytestmark = pytest.mark.skipif(find_compiler() is None, reason="no C compiler (set CC or install gcc)")


def run_c(net: nn.Module, shape: tuple[int, ...], tmp: Path, x: torch.Tensor | None = None,
          flags: tuple[str, ...] | None = None, native: bool = True) -> tuple[np.ndarray, torch.Tensor]:
    program = generate(net, shape, "net")
    kwargs = {"flags": flags} if flags is not None else {}
    lib = compile_library(program, tmp, native=native, **kwargs)
    x = torch.randn(96, *shape, generator=torch.Generator().manual_seed(1)) if x is None else x
    y, labels = lib.run(x.numpy())
    assert (labels == y.argmax(1)).all()
    return y, x


def assert_parity(net: nn.Module, shape: tuple[int, ...], tmp: Path) -> None:
    y, x = run_c(net, shape, tmp)
    parity = parity_of(y, net, x, inputs="random", runtime="c")
    assert parity.ok, parity
    assert parity.argmax_agreement == 1.0 or parity.at_ties, parity


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 96), nn.BatchNorm1d(96), nn.ReLU(), nn.Linear(96, 80),
                         nn.BatchNorm1d(80), nn.Hardtanh(), nn.Linear(80, 70), nn.BatchNorm1d(70), nn.ReLU(),
                         nn.Linear(70, 10))


def convnet() -> nn.Module:
    """Padding, stride, max pooling (fused on bits and per position before a flatten), a 5x5 kernel, 72 channels
    (two words a position)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 72, 3, stride=2, padding=1), nn.BatchNorm2d(72), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(72, 24, 5, padding=2), nn.BatchNorm2d(24), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.Flatten(), nn.Linear(24 * 4 * 4, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))


@pytest.mark.parametrize("first", [None, Precision.INT8])
def test_mlp_matches_torch(tmp_path, first):
    net = binarized(mlp(), rules=PlanRules(first=first, min_params=0, min_fan_in=0))
    assert_parity(net, (1, 28, 28), tmp_path)


def test_conv_net_with_padding_stride_and_pooling_matches_torch(tmp_path):
    assert_parity(binarized(convnet()), (1, 28, 28), tmp_path)


def test_residual_and_concatenation_match_torch(tmp_path):
    assert_parity(binarized(Branches(), (1, 16, 16)), (1, 16, 16), tmp_path)


def test_pooling_dropout_and_log_softmax_called_as_functions_match_torch(tmp_path):
    """PyTorch's MNIST example calls them in ``forward`` (``F.max_pool2d(x, 2)``): the C export knows them."""
    assert_parity(binarized(FunctionalNet()), (1, 28, 28), tmp_path)


@pytest.mark.parametrize("dims, size", [(1, 5), (2, (5, 3))])
def test_adaptive_max_pooling_matches_torch(tmp_path, dims, size):
    """Global max pooling ends many 1-D sensor and text CNNs; uneven windows as torch cuts them."""
    torch.manual_seed(0)
    shape = (1, 28) if dims == 1 else (1, 28, 28)
    assert_parity(binarized(AdaptiveMax(dims, size), shape), shape, tmp_path)


def test_group_and_instance_norm_match_torch(tmp_path):
    torch.manual_seed(0)
    assert_parity(binarized(norms_net()), (1, 28, 28), tmp_path)


@pytest.mark.parametrize("dims", [1, 2])
def test_padding_modes_match_torch(dims, tmp_path):
    """reflect, replicate and circular padding (the lowering makes each a padding step): binary convolutions, the
    first layer's real-valued input and a convolution kept FP32 ("10")."""
    shape = (1, 32) if dims == 1 else (1, 16, 16)
    torch.manual_seed(0)
    assert_parity(binarized(padding_modes_net(dims), shape, PlanRules(keep=("10",), min_params=0, min_fan_in=0)),
                  shape, tmp_path)


def test_more_activations_match_torch(tmp_path):
    torch.manual_seed(0)
    assert_parity(binarized(Activations(), (1, 16, 16)), (1, 16, 16), tmp_path)


def test_conv1d_net_matches_torch(tmp_path):
    torch.manual_seed(0)
    assert_parity(binarized(conv1d_net(), (1, 64)), (1, 64), tmp_path)


FORWARD_HABITS = {
    # F.avg_pool1d(x, x.shape[-1]) (torchaudio's M5): the window is a constant of the exported sample shape
    "a pooling window computed from the shape": (Waveform, (1, 500)),
    "padding, clamping and reductions called in forward": (Reductions, (3, 40)),
    "a layer called twice and attention by indexing": (CBAM, (1, 16, 16)),
    "indexing a sequence": (Slices, (2, 24)),
    "nearest-neighbour resizing (nn.Upsample, F.interpolate)": (Resized, (1, 16, 16)),
}


@pytest.mark.parametrize("habit", FORWARD_HABITS)
def test_what_forward_writes_matches_torch(tmp_path, habit):
    make, shape = FORWARD_HABITS[habit]
    torch.manual_seed(0)
    assert_parity(binarized(make(), shape), shape, tmp_path)


@pytest.mark.parametrize("kind, layers, bidirectional, read", [
    ("lstm", 1, False, "last step"), ("lstm", 2, True, "last step"), ("gru", 2, False, "last layer"),
    ("gru", 1, True, "last step"), ("lstm", 1, False, "one layer"),
])
def test_lstm_and_gru_match_torch(tmp_path, kind, layers, bidirectional, read):
    """Recurrent layers stay FP32 and compute as torch does, in any layers and directions, read by the output's
    last step or by the final state."""
    torch.manual_seed(0)
    assert_parity(binarized(Recurrent(kind, layers, bidirectional, read), (3, 20)), (3, 20), tmp_path)


def test_linear_layers_on_token_rows_match_torch(tmp_path):
    torch.manual_seed(0)
    assert_parity(binarized(TokenMLP(), (8, 16)), (8, 16), tmp_path)


def test_real_input_conv_flattened_into_per_position_thresholds_matches_torch(tmp_path):
    """The paper's first layer as a conv whose output, flattened, meets one binarizer threshold per feature."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 13 * 13, 20),
                          nn.BatchNorm1d(20), nn.ReLU(), nn.Linear(20, 5))
    net = binarized(model)
    assert "bnnc_threshold_positions(" in generate(net, (1, 28, 28), "n").source
    assert_parity(net, (1, 28, 28), tmp_path)


def test_grouped_and_depthwise_convolutions_match_torch(tmp_path):
    torch.manual_seed(0)
    assert_parity(binarized(grouped_net(), (1, 16, 16)), (1, 16, 16), tmp_path)


C_SEEDS = list(range(30))


def check_fuzzed(tmp_path: Path, seed: int) -> None:
    model, shape = random_net(seed)
    rng = random.Random(seed + 1)
    first, last = rng.choice([None, None, Precision.INT8]), rng.choice([None, None, Precision.INT8])
    net = binarized(model, shape, PlanRules(first=first, last=last, min_params=0, min_fan_in=0), seed=seed)
    if not binary_layers(net):
        return
    y, x = run_c(net, shape, tmp_path)
    parity = parity_of(y, net, x, inputs="random", runtime="c")
    assert parity.unexplained == 0, (seed, parity)  # ties beyond the share are the model's, as for ONNX


@pytest.mark.parametrize("seed", C_SEEDS)
def test_fuzzed_architectures_match_torch(tmp_path, seed):
    check_fuzzed(tmp_path, seed)


@pytest.mark.fuzz
@pytest.mark.parametrize("seed", range(30, 300))
def test_fuzzed_architectures_long(tmp_path, seed):
    check_fuzzed(tmp_path, seed)


REFUSED = {"vit": ".expand()", "timm_vit": ".expand()"}  # attention: no C kernels (ONNX and OpenVINO export them)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_architecture_families_match_torch_or_are_refused_in_one_line(tmp_path, name):
    torch.manual_seed(0)
    shape = (1, FAMILIES[name], FAMILIES[name])
    net = binarized(getattr(families, name)(), shape)
    if name in REFUSED:
        with pytest.raises(ExportError, match=re.escape(REFUSED[name])):
            generate(net, shape, name)
        return
    y, x = run_c(net, shape, tmp_path, x=torch.randn(24, *shape, generator=torch.Generator().manual_seed(2)))
    parity = parity_of(y, net, x, inputs="random", runtime="c")
    assert parity.ok, (name, parity)


def variants() -> list[tuple[str, tuple[str, ...]]]:
    """The kernels this machine can run: plain C, the compiler's popcount, and each SIMD extension it has."""
    flags = open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").exists() else ""
    found = [("portable", ("-DBNNC_PORTABLE",)), ("builtin", ())]
    if " avx2" in flags:
        found.append(("avx2", ("-mavx2",)))
    if " avx512_vpopcntdq" in flags:
        found.append(("avx512", ("-mavx512f", "-mavx512vpopcntdq")))
    return found


def test_every_simd_variant_computes_the_same(tmp_path):
    """Bit-exact across kernels: an FP32 first layer (plain loops, one order), then binary layers (integers); each
    variant compiles without a warning (-Wall -Wextra -pedantic)."""
    net = binarized(convnet(), rules=PlanRules(first=Precision.FP32, min_params=0, min_fan_in=0))
    outputs = {}
    for name, extra in variants():
        y, _ = run_c(net, (1, 28, 28), tmp_path / name, native=False,  # and warning-free in every variant
                     flags=("-std=c99", "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-pedantic", "-Werror", *extra))
        outputs[name] = y
    assert len(outputs) >= 2
    first = next(iter(outputs.values()))
    for name, y in outputs.items():
        assert np.array_equal(y, first), name


def test_the_real_valued_first_layer_agrees_across_variants(tmp_path):
    """The paper's first layer sums floats in a kernel-specific order: equal within rounding, same classes."""
    net = binarized(mlp())
    outputs = [run_c(net, (1, 28, 28), tmp_path / n, flags=("-std=c99", "-O2", "-ffp-contract=off", *f),
                     native=False)[0] for n, f in variants()]
    for y in outputs[1:]:
        np.testing.assert_allclose(y, outputs[0], rtol=1e-5, atol=1e-4)


def test_export_writes_header_source_and_readme_and_checks(tmp_path, fp32_checkpoint):
    from bnnc import convert_file

    src = fp32_checkpoint("mlp", preprocessing={"mean": [0.5], "std": [0.25], "pixel_scale": 1 / 255,
                                                "input_shape": [1, 28, 28]})
    converted = convert_file(src, tmp_path / "m.bnnc").output
    result = export_c(converted, tmp_path / "out", check_samples=64)
    names = sorted(p.name for p in result.files)
    assert names == ["README.md", "m.c", "m.h"]
    header = (tmp_path / "out" / "m.h").read_text()
    assert "int m_predict(const float *input, float *logits);" in header
    assert "int m_predict_u8(const uint8_t *pixels, float *logits);" in header
    source = (tmp_path / "out" / "m.c").read_text()
    assert "malloc(" not in source and "#include <math.h>" not in source
    assert result.c["checked"] and result.parity and result.parity[0].ok
    with pytest.raises(Exception, match="exists"):
        export_c(converted, tmp_path / "out", check=False)


def test_a_wrong_threshold_fails_the_check_and_writes_nothing(tmp_path, monkeypatch):
    net = binarized(mlp())
    real = csource_module._thresholds
    monkeypatch.setattr(csource_module, "_thresholds", lambda t, integer: real(t, integer) + (3 if integer else 0.5))
    with pytest.raises(ExportError, match="doesn't match"):
        export_c(net, tmp_path / "out", input_shape=(1, 28, 28), check_samples=64)
    assert not (tmp_path / "out").exists()


def test_without_a_compiler_the_files_are_written_and_the_check_is_skipped(tmp_path, monkeypatch):
    import bnnc.export.c_export as c_export

    monkeypatch.setattr(c_export, "find_compiler", lambda: None)
    result = export_c(binarized(mlp()), tmp_path / "out", input_shape=(1, 28, 28))
    assert result.c["checked"] is False and not result.parity
    assert any("no C compiler" in n for n in result.notes)
    assert (tmp_path / "out" / "out.c").exists()


def test_unsupported_operations_are_refused_in_one_line(tmp_path):
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(16, 16), nn.Linear(16, 4)

        def forward(self, x):
            return self.b(torch.cumsum(self.a(x), dim=1))

    net = binarized(Odd(), (16,), PlanRules(min_params=0, min_fan_in=0, first=Precision.BINARY))
    with pytest.raises(ExportError, match="no kernel for cumsum"):
        export_c(net, tmp_path / "out", input_shape=(16,))

    class Tails(nn.Module):
        """What the C export computes only in part: a max's indices, a max of two tensors, cropping, resizing other
        than by the nearest value."""

        def __init__(self, tail: str) -> None:
            super().__init__()
            self.tail = tail
            self.c, self.fc = nn.Conv1d(2, 8, 3), nn.Linear(8, 4)

        def forward(self, x):
            y = self.c(x)
            if self.tail == "indices":
                y = torch.max(y, 2)[1].float()
            elif self.tail == "two tensors":
                y = torch.max(y, y * 2).mean(2)
            elif self.tail == "linear":
                y = F.interpolate(y, scale_factor=2, mode="linear").mean(2)
            else:
                y = F.pad(y, (-1, -1)).mean(2)
            return self.fc(y)

    for tail, what in (("indices", "the indices of a max"), ("two tensors", "an elementwise max of two tensors"),
                       ("crop", "cropping"), ("linear", "resizing by 'linear' interpolation")):
        net = binarized(Tails(tail), (2, 12), PlanRules(min_params=0, min_fan_in=0))
        with pytest.raises(ExportError, match=f"no kernel for {what}"):
            export_c(net, tmp_path / tail, input_shape=(2, 12))

    class States(nn.Module):
        """Both layers' final states side by side: torch's (layers, batch, hidden) moved batch first."""

        def __init__(self) -> None:
            super().__init__()
            self.c, self.fc = nn.Conv1d(3, 8, 3), nn.Linear(12, 4)
            self.rnn = nn.GRU(8, 6, num_layers=2, batch_first=True)

        def forward(self, x):
            _, h = self.rnn(self.c(x).permute(0, 2, 1))
            return self.fc(h.permute(1, 0, 2).flatten(1))

    net = binarized(States(), (3, 12), PlanRules(min_params=0, min_fan_in=0))
    with pytest.raises(ExportError, match="final state other than one layer of it"):
        export_c(net, tmp_path / "states", input_shape=(3, 12))


def test_compress_says_what_the_c_export_lacks_before_fine_tuning(tmp_path):
    """Not after the epochs: the C program is generated from the converted model first; nothing is left behind."""
    from bnnc import compress
    from bnnc.checkpoint import save_checkpoint
    from bnnc.events import Stage

    torch.manual_seed(0)
    src = tmp_path / "cum.pt"
    save_checkpoint(src, state_dict=Cumulative().state_dict(), arch="archs:Cumulative", preprocessing=PRE)
    stages: list[str] = []
    with pytest.raises(ExportError, match="no kernel for cumsum"):
        compress(src, learnable_npz(tmp_path, 64, 32), tmp_path / "out", formats=("onnx", "c"), arch="archs:Cumulative",
                 on_event=lambda e: stages.append(e.text) if isinstance(e, Stage) else None)
    assert stages == [f"convert {src}"] and not (tmp_path / "out").exists()


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc (apt-get install "
                    "gcc-arm-none-eabi libnewlib-arm-none-eabi)")
def test_cortex_m4_build_fits_flash_and_ram(tmp_path):
    net = binarized(mlp())
    program = generate(net, (1, 28, 28), "m4")
    size = object_size(program, compiler="arm-none-eabi-gcc", flags=CORTEX_M4)
    assert size is not None
    assert program.weight_bytes <= size.flash <= 1.1 * program.weight_bytes + 16384  # the kernels' code
    assert size.bss == program.ram_bytes


def test_cli_export_format_c_writes_the_folder_and_refuses_onnx_only_options(tmp_path, fp32_checkpoint):
    from typer.testing import CliRunner

    from bnnc import convert_file
    from bnnc.cli import app

    converted = convert_file(fp32_checkpoint("mlp"), tmp_path / "net.bnnc").output
    runner = CliRunner()
    r = runner.invoke(app, ["export", str(converted), "--format", "c", "--check-samples", "32", "--json"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "net-c").iterdir()) == ["README.md", "net.c", "net.h"]
    assert '"format": "c"' in r.stdout
    r = runner.invoke(app, ["export", str(converted), "--format", "c", "--float"])
    assert r.exit_code != 0 and "applies to --format onnx only" in r.output
    r = runner.invoke(app, ["export", str(converted), "--format", "c", "--name", "my_net", "-o",
                            str(tmp_path / "named"), "--no-check"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "named" / "my_net.h").read_text().count("int my_net_predict(") == 1


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
def test_the_neon_kernels_compile_for_a_cortex_a(tmp_path):
    """No ARM board here to run them: the NEON path at least compiles (and is the one selected)."""
    import subprocess

    program = generate(binarized(convnet()), (1, 28, 28), "neon")
    (tmp_path / "neon.h").write_text(program.header)
    (tmp_path / "neon.c").write_text(program.source + "\n#ifndef BNNC_NEON\n#error NEON not selected\n#endif\n")
    done = subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-a7", "-mfpu=neon-vfpv4", "-mfloat-abi=hard", "-O2",
                           "-std=c99", "-Wall", "-Werror", "-c", "-o", str(tmp_path / "neon.o"),
                           str(tmp_path / "neon.c")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
