import random
import textwrap

import pytest
import torch
from conftest import Payload, build
from torch import nn

from bnnc import zoo
from bnnc.checkpoint import save_checkpoint
from bnnc.errors import ModelLoadError, OutputError, UntrustedModelError
from bnnc.loading import load_checkpoint, load_model
from bnnc.outputs import atomic_write


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------ accepted forms


def test_bnnc_checkpoint_reloads_with_weights_only(fp32_checkpoint):
    path = fp32_checkpoint("cnn", preprocessing={"input_shape": [1, 28, 28]})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "bnnc-model" and raw["arch"] == "bnnc.zoo:VGG"
    loaded = load_checkpoint(path)
    assert isinstance(loaded.model, zoo.VGG) and _same_weights(loaded.model, build("cnn"))
    assert loaded.preprocessing == {"input_shape": [1, 28, 28]} and not loaded.is_binarized
    assert len(loaded.sha256) == 64


def test_plain_dict_naming_its_arch(tmp_path):
    model = build("mlp")
    path = tmp_path / "m.pt"
    torch.save({"arch": "bnnc.zoo:MLP", "arch_kwargs": {"hidden": [64, 48]}, "state_dict": model.state_dict()}, path)
    assert _same_weights(load_model(path), model)


def test_state_dict_with_arch_and_kwargs(tmp_path):
    model = build("mlp")
    path = tmp_path / "sd.pt"
    torch.save(model.state_dict(), path)
    loaded = load_model(path, arch="bnnc.zoo:MLP", arch_kwargs={"hidden": [64, 48]})
    assert _same_weights(loaded, model)


def test_wrapped_state_dict_with_arch(tmp_path):
    model = build("mlp")
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "model_state_dict": model.state_dict()}, path)
    assert _same_weights(load_model(path, arch="bnnc.zoo:MLP", arch_kwargs={"hidden": [64, 48]}), model)
    # pytorch-cifar's checkpoint: the weights under a key of its own, saved from DataParallel
    torch.save({"net": {f"module.{k}": v for k, v in model.state_dict().items()}, "acc": 93.1, "epoch": 199}, path)
    assert _same_weights(load_model(path, arch="bnnc.zoo:MLP", arch_kwargs={"hidden": [64, 48]}), model)
    torch.save({"student": model.state_dict(), "teacher": model.state_dict()}, path)
    with pytest.raises(ModelLoadError, match=r"under each of 'student', 'teacher'.*ckpt\['student'\]"):
        load_model(path, arch="bnnc.zoo:MLP", arch_kwargs={"hidden": [64, 48]})


def test_a_safetensors_state_dict_with_arch(tmp_path):
    """Hugging Face's format (raw tensors and a JSON header, no pickle): read as a state dict; a truncated one is
    one line saying so."""
    from safetensors.torch import save_file

    model = build("mlp")
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    assert _same_weights(load_model(path, arch="bnnc.zoo:MLP", arch_kwargs={"hidden": [64, 48]}), model)
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        load_model(tmp_path / "cut.safetensors", arch="bnnc.zoo:MLP", arch_kwargs={"hidden": [64, 48]})


def test_arch_from_a_module_in_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "my_models_for_test.py").write_text(textwrap.dedent("""
        from torch import nn
        def tiny(width=3):
            return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2))
    """))
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    monkeypatch.chdir(tmp_path)
    loaded = load_model("sd.pt", arch="my_models_for_test:tiny", arch_kwargs={"width": 5})
    assert _same_weights(loaded, model)


def test_pickled_module_only_with_trust(tmp_path):
    model = build("mlp")
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    with pytest.raises(UntrustedModelError, match="--trust-model"):
        load_model(path)
    loaded = load_checkpoint(path, trust_model=True)
    assert _same_weights(loaded.model, model) and "pickled" in loaded.form


# ------------------------------------------------------------------ refused forms


def test_code_in_pickle_never_runs_without_trust(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Payload(marker)}, path)
    with pytest.raises(UntrustedModelError):
        load_model(path, arch="bnnc.zoo:MLP")
    assert not marker.exists()


def test_tampered_arch_reference_cant_call_arbitrary_functions(tmp_path):
    marker = tmp_path / "pwned"
    for ref, kwargs in (("os:system", {"command": f"touch {marker}"}),
                        ("subprocess:run", {"args": ["touch", str(marker)]}),
                        ("builtins:exec", {"source": "1"})):
        path = tmp_path / "t.pt"
        torch.save({"arch": ref, "arch_kwargs": kwargs, "state_dict": {}}, path)
        with pytest.raises(ModelLoadError, match="can't define a model"):
            load_model(path)
    assert not marker.exists()


def test_arch_must_be_a_module_class_or_function(tmp_path):
    torch.save(build("mlp").state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelLoadError, match="not an nn.Module class or a function"):
        load_model(tmp_path / "sd.pt", arch="bnnc.zoo:__doc__")


@pytest.mark.parametrize("arch, message", [
    ("bnnc.zoo:VGG", "don't fit architecture"),
    ("no_such_pkg.models:Net", "can't import 'no_such_pkg.models'"),
    ("bnnc.zoo:Nope", "has no attribute 'Nope'"),
    ("bnnc.zoo", "not of the form"),
])
def test_bad_arch_for_state_dict(tmp_path, arch, message):
    path = tmp_path / "sd.pt"
    torch.save(build("mlp").state_dict(), path)
    with pytest.raises(ModelLoadError, match=message):
        load_model(path, arch=arch)


def test_key_mismatch_names_the_keys(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(build("mlp").state_dict(), path)
    with pytest.raises(ModelLoadError, match=r"shape mismatch: features.1.weight \(64, 784\) vs \(1024, 784\)"):
        load_model(path, arch="bnnc.zoo:MLP")


def test_state_dict_without_arch(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(build("mlp").state_dict(), path)
    with pytest.raises(ModelLoadError, match="plain state dict.*--arch"):
        load_model(path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "ts.pt"
    torch.jit.script(nn.Linear(2, 2)).save(str(path))
    with pytest.raises(ModelLoadError, match="TorchScript"):
        load_model(path)


def test_onnx_file_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    for name in ("model.onnx", "model.pt"):
        path = tmp_path / name
        onnx.save(helper.make_model(graph), path)
        with pytest.raises(ModelLoadError, match="ONNX"):
            load_model(path)


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"", "empty"),
    (random.Random(0).randbytes(4096), "not a readable PyTorch checkpoint"),
], ids=["missing", "empty", "random-bytes"])
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "model.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


def test_directory_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="directory"):
        load_model(tmp_path)


def test_truncated_checkpoint(fp32_checkpoint):
    path = fp32_checkpoint("mlp")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="not a readable PyTorch checkpoint"):
        load_model(path)


def test_nan_weights_are_refused(tmp_path):
    model = build("mlp")
    with torch.no_grad():
        model.features[1].weight[0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    save_checkpoint(path, state_dict=model.state_dict(), arch="bnnc.zoo:MLP", arch_kwargs={"hidden": [64, 48]})
    with pytest.raises(ModelLoadError, match="NaN or inf"):
        load_model(path)


def test_other_objects_are_refused(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ModelLoadError, match="holds a list"):
        load_model(path)
    torch.save({"epoch": 1, "lr": 0.1}, path)
    with pytest.raises(ModelLoadError, match="no state dict"):
        load_model(path, arch="bnnc.zoo:MLP")


def test_newer_format_version_is_refused(fp32_checkpoint):
    path = fp32_checkpoint("mlp")
    raw = torch.load(path, weights_only=True)
    raw["format_version"] = 99
    torch.save(raw, path)
    with pytest.raises(ModelLoadError, match="format version 99"):
        load_model(path)


# ------------------------------------------------------------------ writing


def test_atomic_write_never_clobbers_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "out.bin"
    atomic_write(path, lambda f: f.write(b"one"))
    with pytest.raises(OutputError, match="already exists"):
        atomic_write(path, lambda f: f.write(b"two"))
    assert path.read_bytes() == b"one"
    atomic_write(path, lambda f: f.write(b"three"), overwrite=True)
    assert path.read_bytes() == b"three"

    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "other.bin", boom)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_write_missing_folder(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        atomic_write(tmp_path / "nope" / "out.bin", lambda f: f.write(b"x"))


@pytest.mark.parametrize("ref", ["bnnc.loading:load_model", "bnnc.formats:torch_load", "bnnc.zoo:load_model",
                                 "bnnc.layers:BinaryLinear", "os:system", "torch.nn:Linear"])
def test_bnnc_stdlib_and_torch_are_never_an_architecture_even_when_named(ref):
    from bnnc.arch import resolve_arch

    with pytest.raises(ModelLoadError):
        resolve_arch(ref, named_by_user=True)


def test_a_module_class_a_file_names_is_accepted_and_a_function_is_not():
    from bnnc.arch import resolve_arch

    assert resolve_arch("bnnc.zoo:MLP", named_by_user=False) is zoo.MLP
    with pytest.raises(UntrustedModelError, match="names the function"):
        resolve_arch("sympy:sympify", named_by_user=False)
