"""Inference BatchNormalization, rounded as torch rounds it on this machine.

A binarizer turns a last-ulp difference into a flipped bit, so the float BatchNorm left in the
exported graph (before a residual add, or after a real-valued first layer) must round like
torch's. torch's CPU kernel computes ``y = x * a + b`` per channel with precomputed ``a, b`` and,
where the CPU has FMA, one rounding (a fused multiply-add); ONNX's BatchNormalization computes
``(x - mean) / sqrt(var + eps) * scale + B`` and rounds differently. Each BatchNormalization is
replaced by ``x * a + b`` with torch's own ``a`` and ``b`` (read back from torch) — in float64,
which is exact for the product and rounds once more at the end, where torch uses FMA (measured
with a probe), else in float32.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from bnnc.export.onnxfacts import constants, shapes

_PROBE = 2.0**40  # x * a + b with x = 2^40: b vanishes and a is exact, so f(2^40) / 2^40 = a


def affine_as_torch(mean: np.ndarray, var: np.ndarray, scale: np.ndarray, bias: np.ndarray,
                 eps: float) -> tuple[np.ndarray, np.ndarray]:
    """torch's per-channel ``(a, b)`` with ``batch_norm(x) == x * a + b``, read back from torch itself."""
    args = [torch.tensor(np.asarray(v, dtype=np.float32)) for v in (mean, var, scale, bias)]
    probe = torch.tensor([[0.0], [_PROBE]], dtype=torch.float32).expand(2, len(mean)).contiguous()
    out = torch.nn.functional.batch_norm(probe, args[0], args[1], args[2], args[3], False, 0.0, eps)
    return (out[1] / _PROBE).numpy(), out[0].numpy()


@lru_cache(maxsize=1)
def torch_uses_fma() -> bool | None:
    """Whether torch's BatchNorm rounds ``x * a + b`` once (FMA) or twice; None if neither matches."""
    gen = torch.Generator().manual_seed(0)
    c = 37
    mean, var, scale, bias = torch.randn(c, generator=gen), torch.rand(c, generator=gen) + 0.01, \
        torch.randn(c, generator=gen), torch.randn(c, generator=gen)
    a, b = affine_as_torch(mean.numpy(), var.numpy(), scale.numpy(), bias.numpy(), 1e-5)
    verdicts = set()
    for shape in ((64, c), (4, c, 5, 7)):
        x = torch.randn(shape, generator=gen) * 5
        y = torch.nn.functional.batch_norm(x, mean, var, scale, bias, False, 0.0, 1e-5).numpy()
        view = (1, c) + (1,) * (len(shape) - 2)
        xa = x.numpy().astype(np.float64) * a.reshape(view).astype(np.float64)
        fused = (xa + b.reshape(view)).astype(np.float32)
        unfused = (x.numpy() * a.reshape(view)).astype(np.float32) + b.reshape(view)
        verdicts.add(True if np.array_equal(fused, y) else False if np.array_equal(unfused, y) else None)
    return verdicts.pop() if len(verdicts) == 1 else None


# Ops through which a last-ulp difference reaches a binarizer unchanged in kind (elementwise or
# selecting); a product or sum over many inputs (MatMul, Conv, pooling by average) ends the path.
_PASS_THROUGH = {"Relu", "Clip", "LeakyRelu", "Add", "Sub", "Mul", "Div", "Identity", "Dropout", "MaxPool",
                 "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Cast", "Neg", "Max", "Min"}


_ROUNDING = {"GreaterOrEqual", "QuantizeLinear"}
"""Where a last-ulp difference can change a result: a binarizer's compare, an int8 layer's quantization."""


def _feeds_binarizer(graph: onnx.GraphProto) -> set[str]:
    """Names of tensors from which a binarizer's comparison (or an int8 layer's quantization) is reached through
    pass-through ops only."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    memo: dict[str, bool] = {}

    def reaches(name: str, depth: int = 0) -> bool:
        if name not in memo:
            memo[name] = False
            memo[name] = depth < 64 and any(
                n.op_type in _ROUNDING or (n.op_type in _PASS_THROUGH and any(reaches(o, depth + 1) for o in n.output))
                for n in consumers.get(name, []))
        return memo[name]

    return {n.output[0] for n in graph.node if n.op_type == "BatchNormalization" and reaches(n.output[0])}


def match_torch_batchnorm(proto: onnx.ModelProto) -> int:
    """Replace inference BatchNormalization nodes whose output reaches a binarizer by torch's
    ``x * a + b``; returns how many. The others stay BatchNormalization (one node, last-ulp
    differences only)."""
    fma = torch_uses_fma()
    if fma is None:
        return 0
    graph = proto.graph
    consts = constants(graph)
    ranks = {name: len(shape) for name, shape in shapes(proto).items()}
    feeding = _feeds_binarizer(graph)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    replaced = 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        params = node.input[1:5]
        if (node.op_type != "BatchNormalization" or attrs.get("training_mode", 0) or len(node.output) != 1
                or len(params) != 4 or not all(p in consts for p in params) or node.input[0] not in ranks
                or node.output[0] not in feeding):
            nodes.append(node)
            continue
        scale, bias, mean, var = (consts[p] for p in params)
        a, b = affine_as_torch(mean, var, scale, bias, float(np.float32(attrs.get("epsilon", 1e-5))))
        shape = (-1,) + (1,) * (ranks[node.input[0]] - 2)
        prefix = node.name or node.output[0]
        a_name, b_name = f"{prefix}.a", f"{prefix}.b"
        inits += [numpy_helper.from_array(a.astype(np.float32).reshape(shape), a_name),
                  numpy_helper.from_array(b.astype(np.float32).reshape(shape), b_name)]
        x = node.input[0]
        if fma:  # a and b are float32 values: stored so, widened once when the session folds constants
            a_name = _add(nodes, "Cast", [a_name], f"{prefix}/a_to_double", to=TensorProto.DOUBLE)
            b_name = _add(nodes, "Cast", [b_name], f"{prefix}/b_to_double", to=TensorProto.DOUBLE)
            x = _add(nodes, "Cast", [x], f"{prefix}/to_double", to=TensorProto.DOUBLE)
        x = _add(nodes, "Mul", [x, a_name], f"{prefix}/mul")
        if fma:
            x = _add(nodes, "Add", [x, b_name], f"{prefix}/add")
            _add(nodes, "Cast", [x], f"{prefix}/to_float", output=node.output[0], to=TensorProto.FLOAT)
        else:
            _add(nodes, "Add", [x, b_name], f"{prefix}/add", output=node.output[0])
        replaced += 1
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    return replaced


def _add(nodes: list[onnx.NodeProto], op: str, inputs: list[str], name: str, output: str | None = None,
         **attrs: object) -> str:
    out = output or f"{name}_output"
    nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
    return out


def module_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` with ``bn(x) == x * a + b`` (to the last ulp) for an eval-mode BatchNorm."""
    ones = torch.ones(bn.num_features)
    zeros = torch.zeros(bn.num_features)
    weight = bn.weight.detach() if bn.weight is not None else ones
    bias = bn.bias.detach() if bn.bias is not None else zeros
    a, b = affine_as_torch(bn.running_mean.numpy(), bn.running_var.numpy(), weight.numpy(), bias.numpy(), bn.eps)
    return torch.from_numpy(a.copy()), torch.from_numpy(b.copy())
