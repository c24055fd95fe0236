"""Files built to run code when loaded: every command refuses them, and the payload never runs.

The payload is a pickled object whose unpickling would call ``os.system("touch MARKER")``; each
test proves the marker file was never created.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PRE, Payload, build, learnable_npz
from typer.testing import CliRunner

from bnnc.cli import app
from bnnc.conversion import convert_file

runner = CliRunner()


@pytest.fixture
def files(tmp_path: Path, fp32_checkpoint) -> dict[str, Path]:
    fp32 = fp32_checkpoint("mlp", preprocessing=PRE)
    model = convert_file(fp32, tmp_path / "m.bnnc").output
    return {"fp32": fp32, "model": model, "data": learnable_npz(tmp_path, 256, 64), "marker": tmp_path / "pwned"}


def _refused(args: list[str], marker: Path, message: str) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and "Traceback" not in r.output, r.stderr
    assert not marker.exists(), "the payload ran"


def test_pickled_model_with_code_is_refused_by_every_command(files, tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": build("mlp").state_dict(), "x": Payload(files["marker"])}, evil)
    data = str(files["data"])
    for args in (["convert", str(evil)], ["convert", str(evil), "--arch", "bnnc.zoo:MLP"],
                 ["compress", str(evil), "--data", data, "-o", str(tmp_path / "out")]):
        _refused(args, files["marker"], "--trust-model")


def test_tampered_bnnc_checkpoint_is_refused(files, tmp_path):
    raw = torch.load(files["model"], weights_only=True)
    raw["metrics"]["note"] = Payload(files["marker"])
    tampered = tmp_path / "tampered.bnnc"
    torch.save(raw, tampered)
    data = str(files["data"])
    for args in (["finetune", str(tampered), "--data", data], ["export", str(tampered)],
                 ["report", str(tampered), "--data", data]):
        _refused(args, files["marker"], "--trust-model")


def test_tampered_arch_reference_cant_run_a_command(files, tmp_path):
    raw = torch.load(files["fp32"], weights_only=True)
    raw["arch"], raw["arch_kwargs"] = "os:system", {"command": f"touch {files['marker']}"}
    tampered = tmp_path / "arch.pt"
    torch.save(raw, tampered)
    _refused(["convert", str(tampered)], files["marker"], "'os:system'")


def test_pt_data_with_code_is_refused(files, tmp_path):
    x = torch.zeros(8, 28, 28, dtype=torch.uint8)
    y = torch.zeros(8, dtype=torch.int64)
    evil = tmp_path / "evil-data.pt"
    torch.save({"x_train": x, "y_train": y, "x_test": x, "y_test": y, "extra": Payload(files["marker"])}, evil)
    for args in (["convert", str(files["fp32"]), "-o", str(tmp_path / "c.bnnc"), "--data", str(evil)],
                 ["finetune", str(files["model"]), "--data", str(evil)],
                 ["export", str(files["model"]), "--data", str(evil)],
                 ["report", str(files["model"]), "--data", str(evil)]):
        _refused(args, files["marker"], "evil-data.pt")


def test_npz_data_with_pickled_objects_is_refused(files, tmp_path):
    evil = tmp_path / "evil.npz"
    x = np.zeros((8, 28, 28), dtype=np.uint8)
    np.savez(evil, x_train=x, y_train=np.zeros(8, dtype=np.int64), x_test=x, y_test=np.zeros(8, dtype=np.int64),
             class_names=np.array([Payload(files["marker"])], dtype=object))
    _refused(["finetune", str(files["model"]), "--data", str(evil)], files["marker"], "pickled objects")


def test_tampered_resume_state_is_refused(files, tmp_path):
    out = tmp_path / "ft.bnnc"
    args = ["finetune", str(files["model"]), "--data", str(files["data"]), "--epochs", "1", "--batch-size", "64",
            "-o", str(out), "--no-recalibrate"]
    assert runner.invoke(app, args).exit_code == 0
    state = out.with_name(out.name + ".state")
    raw = torch.load(state, weights_only=True)
    raw["history"].append(Payload(files["marker"]))
    torch.save(raw, state)
    _refused([*args[:5], "2", *args[6:], "--resume"], files["marker"], "can't be read")
    torch.save(["not", "a", "state"], state)
    _refused([*args[:5], "2", *args[6:], "--resume"], files["marker"], "not a bnnc resume state")


def test_onnx_pointing_at_other_files_is_refused(files, tmp_path):
    """An ONNX file whose tensor "lives" in another file would make the report read that file."""
    import onnx
    from onnx.external_data_helper import set_external_data

    onnx_path = tmp_path / "m.onnx"
    assert runner.invoke(app, ["export", str(files["model"]), "-o", str(onnx_path)]).exit_code == 0
    proto = onnx.load(onnx_path)
    secret = tmp_path / "secret"
    secret.write_bytes(b"\0" * 4096)
    tensor = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    set_external_data(tensor, location=str(secret))
    tensor.ClearField("raw_data")
    onnx.save(proto, onnx_path)
    _refused(["report", str(files["model"]), "--data", str(files["data"]), "--onnx", str(onnx_path)],
             files["marker"], "refers to tensors in other files")


def _gadgets(tmp_path: Path, marker: Path) -> list[tuple[str, dict]]:
    """Callables a tampered ``arch`` could name, with arguments that would create ``marker`` if called."""
    touch = f"touch {marker}"
    pickled = tmp_path / "pickled.pt"
    torch.save(Payload(marker), pickled)
    npy = tmp_path / "pickled.npy"
    np.save(npy, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    script = tmp_path / "script.py"
    script.write_text(f"import os\nos.system({touch!r})\n")
    module = tmp_path / "models.py"  # builds a model, and runs the payload as it is imported
    module.write_text(f"import os\nfrom torch import nn\nos.system({touch!r})\n\n\n"
                      "class Net(nn.Sequential):\n    pass\n")
    return [
        (f"{script}:main", {}),  # a file of code: importing it runs it
        (f"{module}:Net", {}),  # an nn.Module class, but in a file the checkpoint chose
        ("sympy:sympify", {"a": f"__import__('os').system({touch!r})"}),   # sympy comes with torch
        ("numpy:load", {"file": str(npy), "allow_pickle": True}),
        ("bnnc.formats:torch_load", {"path": str(pickled), "trust_model": True}),
        ("bnnc.loading:load_model", {"path": str(pickled), "trust_model": True}),
        ("bnnc.zoo:load_model", {"path": str(pickled), "trust_model": True}),  # bnnc's loaders, by any path
        ("builtins:eval", {"source": f"__import__('os').system({touch!r})"}),
        ("subprocess:run", {"args": ["touch", str(marker)]}),
        ("runpy:run_path", {"path_name": str(script)}),
        ("pickle:loads", {"data": "x"}),
        ("importlib:import_module", {"name": "os"}),
        ("os:system", {"command": touch}),
        ("pip._internal.cli.main:main", {"args": ["--version"]}),
        ("torch.hub:load", {"repo_or_dir": str(tmp_path), "model": "x", "source": "local"}),
    ]


def test_no_arch_a_file_names_can_run_code_through_any_command(files, tmp_path):
    """A tampered ``arch`` resolves only to an nn.Module class or a factory this user allowed: every gadget,
    from an FP32 checkpoint and from a converted one, through every command, is refused and never runs."""
    import importlib.util

    marker, data = files["marker"], str(files["data"])
    fp32_raw = torch.load(files["fp32"], weights_only=True)
    bnnc_raw = torch.load(files["model"], weights_only=True)
    for i, (ref, kwargs) in enumerate(_gadgets(tmp_path, marker)):
        module = ref.rpartition(":")[0]
        if not module.endswith(".py") and importlib.util.find_spec(module.split(".")[0]) is None:
            continue  # not installed here: nothing to call
        fp32, converted = tmp_path / f"g{i}.pt", tmp_path / f"g{i}.bnnc"
        torch.save({**fp32_raw, "arch": ref, "arch_kwargs": kwargs}, fp32)
        torch.save({**bnnc_raw, "arch": ref, "arch_kwargs": kwargs}, converted)
        for args in (["convert", str(fp32), "-o", str(tmp_path / "out.bnnc")],
                     ["compress", str(fp32), "--data", data, "-o", str(tmp_path / "out")],
                     ["finetune", str(converted), "--data", data, "-o", str(tmp_path / "ft.bnnc")],
                     ["export", str(converted), "-o", str(tmp_path / "out.onnx")],
                     ["report", str(converted), "--data", data, "--json-out", str(tmp_path / "r.json")]):
            r = runner.invoke(app, args)
            assert r.exit_code == 2, (ref, args[0], r.output)
            assert ref in r.stderr and "Traceback" not in r.output, (ref, args[0], r.stderr)
            assert not marker.exists(), f"{ref} ran through bnnc {args[0]}"
        assert not any((tmp_path / n).exists() for n in ("out.bnnc", "out", "ft.bnnc", "out.onnx", "r.json"))


def test_a_forged_onnx_with_copied_metadata_is_refused_by_report(files, tmp_path):
    """Metadata can be copied onto any graph: report checks the graph is what bnnc export makes of the
    checkpoint, and follows no external data, not even in a subgraph."""
    import onnx
    from onnx import TensorProto, helper

    real = tmp_path / "real.onnx"
    assert runner.invoke(app, ["export", str(files["model"]), "-o", str(real)]).exit_code == 0
    meta = {p.key: p.value for p in onnx.load(real).metadata_props}
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)

    def forged(path: Path, external_in_subgraph: bool) -> Path:
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])
        y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])
        nodes = [helper.make_node("Flatten", ["input"], ["flat"]),
                 helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["logits"])]
        inits = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in
                 (("starts", 0), ("ends", 10), ("axes", 1))]
        if external_in_subgraph:
            leak = helper.make_tensor("leak", TensorProto.FLOAT, [4], [0.0] * 4)
            leak.data_location = TensorProto.EXTERNAL
            leak.ClearField("float_data")
            leak.external_data.add(key="location", value="secret.bin")
            branch = helper.make_graph([helper.make_node("Identity", ["leak"], ["out"])], "b", [],
                                       [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4])], [leak])
            cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
            inits.append(cond)
            nodes.append(helper.make_node("If", ["cond"], ["unused"], then_branch=branch, else_branch=branch))
        model = helper.make_model(helper.make_graph(nodes, "forged", [x], [y], inits))
        for k, v in meta.items():
            model.metadata_props.add(key=k, value=v)
        onnx.save(model, path)
        return path

    data = str(files["data"])
    for path, message in ((forged(tmp_path / "forged.onnx", False), "is not what bnnc export makes"),
                          (forged(tmp_path / "leaky.onnx", True), "refers to tensors in other files")):
        r = runner.invoke(app, ["report", str(files["model"]), "--data", data, "--onnx", str(path),
                                "--min-compression", "100", "--json-out", str(tmp_path / "r.json")])
        assert r.exit_code == 2 and message in r.stderr, r.output
        assert not (tmp_path / "r.json").exists()
