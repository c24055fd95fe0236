"""``torch.export`` programs (``.pt2``) as models: loaded safely, their layers made modules again.

``torch.export.load`` unpickles some payloads with ``weights_only=False`` (weights or constants
saved with pickle, legacy archives, and example inputs it can't read otherwise), so an archive
is only handed to it after :func:`check_archive` has found nothing but raw tensor payloads and
example inputs that load with ``weights_only=True`` — unless the user trusts the file.

An exported program computes with ``aten`` calls, not ``nn.Linear`` modules; :func:`as_module`
turns each ``linear``/``conv``/``batch_norm`` call back into the module it came from (the graph
records which), so the program converts, fine-tunes and exports like any model, its graph known.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from bnnc.errors import ModelLoadError, UntrustedModelError
from bnnc.layers import set_submodule

_SAFE_PAYLOAD_PREFIXES = ("weight_", "tensor_")
_LEGACY = ("serialized_state_dict.pt", "serialized_constants.pt", "serialized_example_inputs.pt")


def is_program(names: list[str]) -> bool:
    """Whether a zip's member names are those of a ``torch.export.save`` archive."""
    return any(n.endswith("archive_format") or "/models/" in n for n in names)


def check_archive(path: Path, names: list[str], trust_model: bool) -> None:
    """Refuse an archive that ``torch.export.load`` would unpickle code from, unless trusted."""
    if trust_model:
        return
    problems: list[str] = []
    if not any(n.endswith("_weights_config.json") for n in names):
        problems.append("no weights config (an archive layout bnnc doesn't know)")  # fail closed
    with zipfile.ZipFile(path) as z:
        for name in names:
            base = name.rsplit("/", 1)[-1]
            payload = "/data/weights/" in name or "/data/constants/" in name
            if base in _LEGACY or (payload and base.endswith(".pt")):
                problems.append(f"legacy pickled payload {base}")
            elif payload and not base.endswith(".json") and not base.startswith(_SAFE_PAYLOAD_PREFIXES):
                problems.append(f"payload {base} of an unknown kind")
            elif name.endswith(("_weights_config.json", "_constants_config.json")):
                try:
                    config = json.loads(z.read(name)).get("config", {})
                except (ValueError, AttributeError):
                    problems.append(f"unreadable {base}")
                    continue
                for fqn, meta in config.items():
                    if not isinstance(meta, dict) or meta.get("use_pickle") or \
                            not str(meta.get("path_name", "")).startswith(_SAFE_PAYLOAD_PREFIXES):
                        problems.append(f"pickled payload for {fqn}")
            elif "/data/sample_inputs/" in name:
                try:
                    torch.load(io.BytesIO(z.read(name)), map_location="cpu", weights_only=True)
                except Exception:  # noqa: BLE001 - anything but plain tensors
                    problems.append("example inputs that aren't plain tensors")
    if problems:
        raise UntrustedModelError(
            f"{path} is a torch.export program with {', '.join(sorted(set(problems))[:3])}; "
            "loading it would unpickle objects, which runs code from the file",
            "pass --trust-model only if you trust its author, or re-export with plain tensor weights")


def load_program(path: Path) -> tuple[nn.Module, tuple[int, ...] | None]:
    """The program in ``path`` (passed by :func:`check_archive`) as a module with real layers, and
    the per-sample input shape it was exported with (None if it takes several inputs)."""
    try:
        program = torch.export.load(path)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad archive
        raise ModelLoadError(f"{path} is not a loadable torch.export program ({type(e).__name__}: {e})",
                             "save it with torch.export.save(torch.export.export(model, ...), path)") from None
    inputs = [s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    shape = None
    if len(inputs) == 1:
        node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == inputs[0].arg.name)
        value = node.meta.get("val")
        if value is not None and isinstance(value.shape[0], int):
            raise ModelLoadError(
                f"{path} was exported for batches of exactly {value.shape[0]}; bnnc needs any batch size",
                "export with a dynamic batch: torch.export.export(model, (x,), "
                "dynamic_shapes={'x': {0: torch.export.Dim('batch')}})")
        if value is not None:
            shape = tuple(int(n) for n in value.shape[1:])
    return as_module(program.module()), shape


_LAYERS = {
    torch.ops.aten.linear.default: "linear",
    torch.ops.aten.conv1d.default: "conv",
    torch.ops.aten.conv2d.default: "conv",
    torch.ops.aten.batch_norm.default: "batch_norm",
}


def _max_pool(module_type: type[nn.Module]) -> Callable[[tuple[Any, ...]], nn.Module]:
    """The max-pool module of an ``aten.max_pool1d/2d(x, kernel, stride=[], padding=0, dilation=1,
    ceil_mode=False)``."""
    def rebuild(args: tuple[Any, ...]) -> nn.Module:
        kernel, stride, padding, dilation, ceil_mode = [*args, *([], 0, 1, False)[len(args) - 1:]]
        return module_type(kernel, stride or kernel, padding, dilation, ceil_mode=ceil_mode)
    return rebuild


# aten call -> (the module type it came from, how to rebuild that module from the call's arguments)
_ELEMENTWISE: dict[Any, tuple[type[nn.Module], Any]] = {
    torch.ops.aten.relu.default: (nn.ReLU, lambda args: nn.ReLU()),
    torch.ops.aten.hardtanh.default: (nn.Hardtanh, lambda args: nn.Hardtanh(*args[:2])),
    torch.ops.aten.leaky_relu.default: (nn.LeakyReLU, lambda args: nn.LeakyReLU(*args[:1])),
    torch.ops.aten.flatten.using_ints: (nn.Flatten, lambda args: nn.Flatten(*args[:2])),
    torch.ops.aten.adaptive_avg_pool1d.default: (nn.AdaptiveAvgPool1d, lambda args: nn.AdaptiveAvgPool1d(*args[:1])),
    torch.ops.aten.adaptive_avg_pool2d.default: (nn.AdaptiveAvgPool2d, lambda args: nn.AdaptiveAvgPool2d(*args[:1])),
    torch.ops.aten.max_pool1d.default: (nn.MaxPool1d, _max_pool(nn.MaxPool1d)),
    torch.ops.aten.max_pool2d.default: (nn.MaxPool2d, _max_pool(nn.MaxPool2d)),
}
# ReLU(inplace=True) and friends stay in-place in an exported program (torchvision's nets use them)
_INPLACE = {torch.ops.aten.relu_.default: torch.ops.aten.relu.default,
            torch.ops.aten.hardtanh_.default: torch.ops.aten.hardtanh.default,
            torch.ops.aten.leaky_relu_.default: torch.ops.aten.leaky_relu.default}
# aten call of a functional (torch.relu(x) in a forward) -> the torch function bnnc's lowering knows
_FUNCTIONS: dict[Any, Any] = {
    torch.ops.aten.relu.default: torch.relu,
    torch.ops.aten.hardtanh.default: F.hardtanh,
    torch.ops.aten.flatten.using_ints: torch.flatten,
}


def as_module(gm: fx.GraphModule) -> fx.GraphModule:
    """The program made a module graph again, as the eager model traces: each ``aten.linear``/``conv``/
    ``batch_norm`` call on the program's own weights becomes a call of an ``nn.Linear``/``Conv``/
    ``BatchNorm`` module named as in the source model; activations, pooling and flattening become the
    modules they came from (or, called as functions, the torch functions), so export fuses the same chains."""
    _layers(gm)
    _elementwise(gm)
    gm.graph.eliminate_dead_code()
    # a plain GraphModule: the program's own module refuses train()/eval(), which fine-tuning needs
    plain = fx.GraphModule(gm, gm.graph, class_name="Program")
    plain.delete_all_unused_submodules()
    return plain


def _elementwise(gm: fx.GraphModule) -> None:
    """aten activations, pools and flattens -> the module of the source model they came from, or a torch function."""
    built: dict[str, nn.Module] = {}
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or not node.args or not isinstance(node.args[0], fx.Node):
            continue
        stack = node.meta.get("nn_module_stack") or {}
        name, type_name = list(stack.values())[-1] if stack else ("", "")
        target = node.target
        if target in _INPLACE and len(node.args[0].users) == 1:  # nothing else sees the mutated input
            target = _INPLACE[target]
        module_type, rebuild = _ELEMENTWISE.get(target, (None, None))
        args = tuple(node.args[1:])
        if module_type is not None and type_name.rsplit(".", 1)[-1] == module_type.__name__ and name:
            if name not in built:
                built[name] = rebuild(args)
                gm.add_submodule(name, built[name])
            with gm.graph.inserting_before(node):
                new = gm.graph.call_module(name, (node.args[0],))
        elif target in _FUNCTIONS:
            with gm.graph.inserting_before(node):
                new = gm.graph.call_function(_FUNCTIONS[target], node.args, dict(node.kwargs))
        else:
            continue
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)


def _layers(gm: fx.GraphModule) -> None:
    """aten linear/conv/batch_norm calls on the program's weights -> the modules they came from."""
    for node in list(gm.graph.nodes):
        kind = _LAYERS.get(node.target) if node.op == "call_function" else None
        stack = node.meta.get("nn_module_stack") or {}
        if kind is None or not stack:
            continue
        name, type_name = list(stack.values())[-1]
        args = list(node.args) + [None] * (3 - len(node.args))  # linear(x, w) has no bias argument
        if not all(a is None or (isinstance(a, fx.Node) and a.op == "get_attr") for a in args[1:3]):
            continue  # weights computed in the graph: leave the call as it is
        tensors = [None if a is None else _fetch(gm, a.target) for a in args[1:3]]
        module = _build(kind, type_name, tensors, args, gm)
        if module is None:
            continue
        _replace_submodule(gm, name, module)
        with gm.graph.inserting_before(node):
            call = gm.graph.call_module(name, (args[0],))
        call.meta = dict(node.meta)
        node.replace_all_uses_with(call)
        gm.graph.erase_node(node)


def _fetch(gm: fx.GraphModule, target: str) -> torch.Tensor:
    owner, _, attr = target.rpartition(".")
    return getattr(gm.get_submodule(owner) if owner else gm, attr)


def _build(kind: str, type_name: str, tensors: list[Any], args: list[Any], gm: fx.GraphModule) -> nn.Module | None:
    weight, bias = tensors
    if kind == "linear":
        m: nn.Module = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    elif kind == "conv":
        stride, padding, dilation, groups = (list(args[3:]) + [1, 0, 1, 1][len(args) - 3:])[:4]
        if isinstance(padding, str):
            return None
        conv = nn.Conv1d if weight.dim() == 3 else nn.Conv2d
        m = conv(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), stride=stride, padding=padding,
                 dilation=dilation, groups=groups, bias=bias is not None)
    else:
        mean, var = (_fetch(gm, a.target) if isinstance(a, fx.Node) and a.op == "get_attr" else None
                     for a in args[3:5])
        if mean is None or var is None or args[5]:  # batch statistics only, or exported in training mode
            return None
        norm = nn.BatchNorm2d if type_name.endswith("BatchNorm2d") else nn.BatchNorm1d
        m = norm(mean.numel(), eps=float(args[7]), momentum=float(args[6]), affine=weight is not None)
        m.running_mean.data.copy_(mean)
        m.running_var.data.copy_(var)
    with torch.no_grad():
        if weight is not None:
            m.weight.copy_(weight)
        if bias is not None:
            m.bias.copy_(bias)
    return m.eval()


def _replace_submodule(gm: fx.GraphModule, name: str, module: nn.Module) -> None:
    """Put ``module`` at ``name``: the program keeps a plain holder of the weights there."""
    old = gm.get_submodule(name)
    if type(old) is not nn.Module and not isinstance(old, type(module)):
        raise ModelLoadError(f"the program's module {name!r} is a {type(old).__name__}", "report this model")
    set_submodule(gm, name, module)
