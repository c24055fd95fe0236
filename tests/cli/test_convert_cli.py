import json
import subprocess
import sys

import torch
from conftest import build
from typer.testing import CliRunner

from bnnc.cli import app

runner = CliRunner()


def test_convert_prints_the_plan_and_totals(tmp_path, fp32_checkpoint):
    src = fp32_checkpoint("mlp")
    r = runner.invoke(app, ["convert", str(src), "-o", str(tmp_path / "m.bnnc")], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    for text in ("features.1", "fp32 → weights", "fp32 → binary", "classifier", "Compression", "MACs binary"):
        assert text in r.stdout
    assert (tmp_path / "m.bnnc").is_file()


def test_convert_json_matches_the_checkpoint(tmp_path, fp32_checkpoint):
    src = fp32_checkpoint("cnn")
    out = tmp_path / "c.bnnc"
    r = runner.invoke(app, ["convert", str(src), "-o", str(out), "--json", "--keep", "features.3",
                            "--first", "binary", "--min-params", "0"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    layers = {x["name"]: x["precision"] for x in d["layers"]}
    assert layers["features.3"] == "fp32" and layers["features.0"] == "binary" and layers["classifier.7"] == "fp32"
    saved = torch.load(out, weights_only=True)["binarized"]["plan"]
    assert {x["name"]: x["precision"] for x in saved["layers"]} == layers
    assert d["totals"]["fp32_bytes"] > d["totals"]["binarized_bytes"] > 0


def test_state_dict_with_arch_kwargs(tmp_path):
    src = tmp_path / "sd.pt"
    torch.save(build("mlp").state_dict(), src)
    r = runner.invoke(app, ["convert", str(src), "--arch", "bnnc.zoo:MLP", "--arch-kwargs", '{"hidden": [64, 48]}'])
    assert r.exit_code == 0, r.output
    assert src.with_suffix(".bnnc").is_file()


def _error_line(r) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.output
    return lines[0]


def test_bad_input_is_one_line_exit_2(tmp_path, fp32_checkpoint):
    sd = tmp_path / "sd.pt"
    torch.save(build("mlp").state_dict(), sd)
    whole = tmp_path / "whole.pt"
    torch.save(build("mlp"), whole)
    existing = fp32_checkpoint("mlp")
    existing.with_suffix(".bnnc").write_bytes(b"keep me")
    cases = [
        ([str(tmp_path / "missing.pt")], "no such file"),
        ([str(tmp_path)], "directory"),
        ([str(sd)], "--arch"),
        ([str(sd), "--arch", "bnnc.zoo:VGG"], "don't fit"),
        ([str(whole)], "--trust-model"),
        ([str(existing)], "--force"),
        ([str(existing), "-o", str(tmp_path / "no" / "x.bnnc")], "does not exist"),
        ([str(existing), "-o", str(existing), "--force"], "is the input"),
        ([str(existing), "-o", str(tmp_path / "k.bnnc"), "--keep", "nope*"], "matches no"),
        ([str(existing), "-o", str(tmp_path / "k.bnnc"), "--input-shape", "3,32,32"], "--input-shape"),
    ]
    for args, message in cases:
        r = runner.invoke(app, ["convert", *args])
        assert r.exit_code == 2, (args, r.output)
        line = _error_line(r)
        assert line.startswith("error: ") and message in line, (args, line)
    assert existing.with_suffix(".bnnc").read_bytes() == b"keep me"


def test_usage_errors_exit_2(fp32_checkpoint):
    src = str(fp32_checkpoint("mlp"))
    for args in (["--input-shape", "a,b"], ["--first", "half"], ["--arch-kwargs", "{bad"], ["--min-params", "-1"]):
        r = runner.invoke(app, ["convert", src, *args])
        assert r.exit_code == 2, (args, r.output)


def test_debug_shows_the_traceback(tmp_path):
    r = runner.invoke(app, ["--debug", "convert", str(tmp_path / "missing.pt")])
    assert r.exit_code == 2 and "Traceback" in r.stderr


def test_trust_model_converts_a_pickled_module(tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save(build("mlp"), whole)
    r = runner.invoke(app, ["convert", str(whole), "--trust-model", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["output"] == str(whole.with_suffix(".bnnc"))


def test_help_does_not_import_torch():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom bnnc.cli import app\n"
            "for args in (['--help'], ['convert', '--help'], ['--version']):\n"
            "    r = CliRunner().invoke(app, args)\n"
            "    assert r.exit_code == 0, r.output\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_console_script_and_python_m(tmp_path):
    import shutil
    from pathlib import Path

    r = subprocess.run([sys.executable, "-m", "bnnc", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("bnnc ")
    script = Path(sys.executable).parent / "bnnc"  # the console script pip installed beside this python
    script = script if script.exists() else Path(shutil.which("bnnc") or "bnnc")
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("bnnc "), r.stderr


def test_interrupt_exits_130_with_one_line(monkeypatch, fp32_checkpoint):
    import bnnc.conversion

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bnnc.conversion, "convert_file", interrupted)
    r = runner.invoke(app, ["convert", str(fp32_checkpoint("mlp"))])
    assert r.exit_code == 130 and _error_line(r).startswith("interrupted")


def test_internal_error_exits_1_and_debug_shows_traceback(monkeypatch, fp32_checkpoint):
    import bnnc.conversion

    def broken(*args, **kwargs):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(bnnc.conversion, "convert_file", broken)
    r = runner.invoke(app, ["convert", str(fp32_checkpoint("mlp"))])
    assert r.exit_code == 1 and "internal error" in _error_line(r) and "--debug" in r.stderr
    r = runner.invoke(app, ["--debug", "convert", str(fp32_checkpoint("mlp", name="b.pt"))])
    assert r.exit_code == 1 and "Traceback" in r.stderr


def test_an_interrupt_a_library_turns_into_its_own_error_still_exits_130(monkeypatch, fp32_checkpoint):
    """Ctrl-C inside torch.save's writer surfaces as a RuntimeError raised while handling it: still 130."""
    import bnnc.conversion

    def interrupted_in_a_library(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from None

    monkeypatch.setattr(bnnc.conversion, "convert_file", interrupted_in_a_library)
    r = runner.invoke(app, ["convert", str(fp32_checkpoint("mlp"))])
    assert r.exit_code == 130 and _error_line(r).startswith("interrupted"), r.output
