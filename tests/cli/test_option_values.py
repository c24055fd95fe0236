"""Random option values, within their ranges and far outside (huge, negative, NaN, infinite, text), through
the CLI: bnnc answers with a result (0), one error line (2) or a failed gate (3) — never an internal
error (1), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PRE, SMALL_ARCHS, build, learnable_npz
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bnnc.checkpoint import save_checkpoint
from bnnc.cli import app
from bnnc.conversion import convert_file

runner = CliRunner()

VALUES = st.one_of(
    st.integers(-3, 3), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["nan", "inf", "-inf", "1e308", "0", "-0", ""]),
    st.text(alphabet="0123456789.,-eKMiB xyz", max_size=8),
).map(str)

OPTIONS = {
    "convert": ["--min-params", "--min-fan-in", "--calibration-batches", "--input-shape", "--target-size",
                "--max-accuracy-drop", "--first", "--last"],
    "finetune": ["--batch-size", "--lr", "--weight-decay", "--temperature", "--distill-weight", "--seed",
                 "--calibration-batches"],  # not --workers: 64 forked copies of the test process is a valid request
    "export": ["--check-samples", "--input-shape"],
    "report": ["--batch", "--threads", "--samples", "--max-accuracy-drop", "--min-compression", "--min-speedup",
               "--max-parity-mismatch"],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("values")
    ref, kwargs = SMALL_ARCHS["mlp"]
    fp32 = d / "fp32.pt"
    save_checkpoint(fp32, state_dict=build("mlp").state_dict(), arch=ref, arch_kwargs=kwargs, preprocessing=PRE)
    return {"fp32": fp32, "model": convert_file(fp32, d / "m.bnnc").output, "data": learnable_npz(d, 64, 32),
            "out": d / "out"}


def _base(command: str, f: dict[str, Path]) -> list[str]:
    out = str(f["out"])
    return {
        "convert": ["convert", str(f["fp32"]), "--data", str(f["data"]), "-o", out + ".bnnc", "--force"],
        "finetune": ["finetune", str(f["model"]), "--data", str(f["data"]), "--epochs", "1", "-o", out + ".ft.bnnc",
                     "--force"],
        "export": ["export", str(f["model"]), "-o", out + ".onnx", "--force"],
        "report": ["report", str(f["model"]), "--data", str(f["data"]), "--samples", "16", "--json",
                   out + ".json", "--force"],
    }[command]


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                                  HealthCheck.too_slow])
@given(command=st.sampled_from(sorted(OPTIONS)), data=st.data())
def test_any_option_value_is_a_result_or_one_error_line(files, command, data):
    chosen = data.draw(st.lists(st.sampled_from(OPTIONS[command]), min_size=1, max_size=2, unique=True))
    args = _base(command, files)
    for option in chosen:
        args += [option, data.draw(VALUES)]
    r = runner.invoke(app, args)
    assert r.exit_code in (0, 2, 3), (args, r.output)
    assert "Traceback" not in r.output and "internal error" not in r.output, (args, r.output)
    if r.exit_code == 2:
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, r.stderr)
