"""A binary layer's sum requantized for the int8 layer after it, in one affine step.

A binary Linear's int32 sum ``s`` (``K`` products of +-1, so ``s`` is one of ``-K, -K+2, ..., K``) that
reaches an int8 layer through per-channel float steps only — its scale ``alpha``, a BatchNorm computed as
torch rounds it, a ReLU — ends as that layer's uint8 input ``q_c(s) = QuantizeLinear(f_c(s))``. Those steps
store three float vectors (12 bytes a channel) and run as about eight nodes. But ``s`` takes at most
``K + 1`` values, so ``q_c`` is a small table, and one affine step reproduces it exactly::

    q = QuantizeLinear(float32(s * A_c) + B_c, scale 1, zero point 0)

with ``A`` float32 and ``B = b / 2^k`` stored as int16 (6 bytes a channel, four nodes; float32 ``B`` where
the int16 grid is too coarse for some channel). ``A, B`` are the centre of the region where every reachable
``s`` lands on its own rounding step (largest margin, by golden-section search on the concave width), ``B``
snapped to the grid, the table recomputed with float32 arithmetic as ONNX Runtime does it. The replacement is
kept only if ONNX Runtime itself computes the same table with both chains (a MatMulInteger in front, as in the
model, so its graph optimizations see the same pattern); otherwise the graph stays as it was. Layers whose
table would exceed :data:`MAX_TABLE` entries aren't folded (the fit's memory and time grow with it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bnnc.export.onnxfacts import shapes

_ELEMENTWISE = {"Cast", "Mul", "Add", "Sub", "Div", "Relu", "Clip", "Max", "Min", "Identity"}
"""Ops a chain from the sum to the quantization may hold (other operands constant and per channel)."""

MAX_TABLE = 1 << 22
"""Most (reachable sums x channels) entries a fold tabulates: 4M, e.g. fan-in 4096 into 1024 channels (~5 s)."""

_ROWS = 256  # sums tabulated per ONNX Runtime call: the bits fed are (rows x fan-in) bytes

_FAR = 1e12  # a saturated step's open side: beyond any |A * s| the search reaches, finite so widths stay finite


@dataclass
class _Chain:
    """``MatMulInteger`` -> elementwise steps -> ``QuantizeLinear``, with what the steps need."""

    matmul: onnx.NodeProto
    steps: list[onnx.NodeProto]        # from the sum's consumer to the QuantizeLinear, in order
    constants: list[onnx.NodeProto]    # nodes computing the steps' constant operands
    fan_in: int
    channels: int


def fold_requantization(proto: onnx.ModelProto) -> int:
    """Replace each binary sum -> float steps -> QuantizeLinear chain by the exact affine step; returns how many."""
    graph = proto.graph
    if not {"MatMulInteger", "QuantizeLinear"} <= {n.op_type for n in graph.node}:
        return 0
    known = shapes(proto)
    opset = next(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx"))
    outputs = {o.name for o in graph.output}
    folded = 0
    for sum_name in [n.output[0] for n in graph.node if n.op_type == "MatMulInteger"]:
        inits = {i.name: i for i in graph.initializer}
        producer = {o: n for n in graph.node for o in n.output}
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in graph.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        chain = _find_chain(producer[sum_name], inits, producer, consumers, known, outputs)
        if chain is None:
            continue
        replacement = _replacement(chain, inits, opset)
        if replacement is None:
            continue
        nodes, new_inits = replacement
        gone = {n.output[0] for n in chain.steps}
        last = chain.steps[-1].output[0]
        rebuilt: list[onnx.NodeProto] = []
        for n in graph.node:
            if n.output and n.output[0] == last:
                rebuilt += nodes
            elif not (n.output and n.output[0] in gone):
                rebuilt.append(n)
        del graph.node[:]
        graph.node.extend(rebuilt)
        graph.initializer.extend(new_inits)
        folded += 1
    return folded


def _scalar(inits: dict[str, onnx.TensorProto], name: str) -> np.ndarray | None:
    t = inits.get(name)
    if t is None:
        return None
    v = numpy_helper.to_array(t)
    return v if v.size == 1 else None


def _binary_weights(name: str, inits: dict[str, onnx.TensorProto], producer: dict[str, onnx.NodeProto]) -> bool:
    """Whether ``name`` is bnnc's unpacked +-1 int8 weight matrix: ``Where(bit, 1, -1)`` on int8 constants."""
    where = producer.get(name)
    if where is None or where.op_type != "Where":
        return False
    values = [_scalar(inits, i) for i in where.input[1:]]
    return [None if v is None or v.dtype != np.int8 else int(v) for v in values] == [1, -1]


def _find_chain(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], producer: dict[str, onnx.NodeProto],
                consumers: dict[str, list[onnx.NodeProto]], shapes: dict[str, list[int | None]],
                outputs: set[str]) -> _Chain | None:
    """The chain from a binary ``MatMulInteger`` (bits with zero point 1 times +-1 weights) to a uint8
    ``QuantizeLinear``, if every step between is elementwise with per-channel constant operands."""
    if node.op_type != "MatMulInteger" or len(node.input) != 3:
        return None
    zp = _scalar(inits, node.input[2])
    weight_shape = shapes.get(node.input[1])
    if (zp is None or zp.dtype != np.uint8 or int(zp) != 1 or not _binary_weights(node.input[1], inits, producer)
            or weight_shape is None or len(weight_shape) != 2 or None in weight_shape):
        return None
    fan_in, channels = int(weight_shape[0] or 0), int(weight_shape[1] or 0)
    if (fan_in + 1) * channels > MAX_TABLE:
        return None
    steps: list[onnx.NodeProto] = []
    constants: list[onnx.NodeProto] = []
    x = node.output[0]
    while True:
        users = consumers.get(x, [])
        if len(users) != 1 or x in outputs:
            return None
        (user,) = users
        others = [i for i in user.input if i != x and i]
        if user.op_type == "QuantizeLinear":
            scale, qzp = (_scalar(inits, i) for i in (list(user.input) + [""])[1:3])
            if user.input[0] != x or scale is None or qzp is None or qzp.dtype != np.uint8:
                return None
            steps.append(user)
            return _Chain(node, steps, constants, fan_in, channels)
        if user.op_type not in _ELEMENTWISE or list(user.input).count(x) != 1:
            return None
        for name in others:
            found = _constant(name, inits, producer)
            shape = shapes.get(name)
            per_channel = shape is not None and all(d == 1 for d in shape[:-1]) and shape[-1:] in ([], [1], [channels])
            if found is None or not per_channel:
                return None
            constants += [n for n in found if n not in constants]
        steps.append(user)
        x = user.output[0]


def _constant(name: str, inits: dict[str, onnx.TensorProto], producer: dict[str, onnx.NodeProto],
              depth: int = 0) -> list[onnx.NodeProto] | None:
    """The nodes computing ``name`` from initializers alone (empty for an initializer); None if it isn't constant."""
    if name in inits:
        return []
    node = producer.get(name)
    if node is None or depth > 8 or node.op_type not in _ELEMENTWISE:
        return None
    found: list[onnx.NodeProto] = []
    for i in node.input:
        sub = _constant(i, inits, producer, depth + 1)
        if sub is None:
            return None
        found += sub
    return found + [node]


def _table(chain: _Chain, steps: list[onnx.NodeProto], constants: list[onnx.NodeProto],
           inits: list[onnx.TensorProto], opset: int) -> np.ndarray:
    """``q_c(s)`` for every reachable sum (rows) and channel (columns), computed by ONNX Runtime.

    The sums come out of a ``MatMulInteger`` of the same form as the model's (bits, zero point 1, +-1 weights
    — here all +1, so every channel gets the same sum), then the chain as given."""
    from bnnc.export.runtime import ort_session

    k, c = chain.fan_in, chain.channels
    matmul = helper.make_node("MatMulInteger", ["bits", "w", "zp"], [chain.matmul.output[0]])
    graph = helper.make_graph(
        [matmul, *constants, *steps], "table",
        [helper.make_tensor_value_info("bits", TensorProto.UINT8, [None, k])],
        [helper.make_tensor_value_info(steps[-1].output[0], TensorProto.UINT8, None)],
        [numpy_helper.from_array(np.ones((k, c), np.int8), "w"), numpy_helper.from_array(np.array(1, np.uint8), "zp"),
         *inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    session = ort_session(model.SerializeToString(), threads=1)
    rows = []
    for start in range(0, k + 1, _ROWS):  # row r: r inputs +1 (uint8 2), the other k - r -1 (0): the sum 2r - k
        r = np.arange(start, min(start + _ROWS, k + 1))
        bits = (r[:, None] > np.arange(k)[None, :]).astype(np.uint8) * 2
        rows.append(np.asarray(session.run(None, {"bits": bits})[0]).reshape(len(r), c))
    return np.concatenate(rows)


def _replacement(chain: _Chain, inits: dict[str, onnx.TensorProto], opset: int
                 ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]] | None:
    """The affine step's nodes and initializers, or None where it doesn't reproduce the table exactly."""
    used = {i for n in (*chain.steps, *chain.constants) for i in n.input if i in inits}
    try:
        table = _table(chain, chain.steps, chain.constants, [inits[n] for n in sorted(used)], opset)
    except Exception:  # noqa: BLE001 - a chain ORT can't run on its own isn't folded
        return None
    sums = np.arange(-chain.fan_in, chain.fan_in + 1, 2, dtype=np.float64)
    fit = fit_affine(sums, table)
    if fit is None:
        return None
    a, b, step = fit
    quant = chain.steps[-1]
    prefix = f"{quant.output[0]}/rq"  # short: every edge stores its name twice
    new_inits = [numpy_helper.from_array(a, f"{prefix}.a"), numpy_helper.from_array(b, f"{prefix}.b"),
                 numpy_helper.from_array(np.array(1.0, np.float32), f"{prefix}.one"),
                 numpy_helper.from_array(np.array(0, np.uint8), f"{prefix}.zero")]
    offsets: list[onnx.NodeProto] = []
    if b.dtype == np.int16:  # int16 on a power-of-two grid: widened once, when the session folds constants
        new_inits.append(numpy_helper.from_array(np.array(step, np.float32), f"{prefix}.step"))
        offsets = [helper.make_node("Cast", [f"{prefix}.b"], [f"{prefix}/b_float"], to=TensorProto.FLOAT),
                   helper.make_node("Mul", [f"{prefix}/b_float", f"{prefix}.step"], [f"{prefix}/b_value"])]
    b_value = offsets[-1].output[0] if offsets else f"{prefix}.b"
    s = chain.matmul.output[0]
    steps = [
        helper.make_node("Cast", [s], [f"{prefix}/sum"], to=TensorProto.FLOAT),
        helper.make_node("Mul", [f"{prefix}/sum", f"{prefix}.a"], [f"{prefix}/scaled"]),
        helper.make_node("Add", [f"{prefix}/scaled", b_value], [f"{prefix}/shifted"]),
        helper.make_node("QuantizeLinear", [f"{prefix}/shifted", f"{prefix}.one", f"{prefix}.zero"],
                         list(quant.output), name=quant.name),
    ]
    # the runtime's own verdict: the same table from the new chain, or the graph stays as it was
    try:
        again = _table(chain, steps, offsets, new_inits, opset)
    except Exception:  # noqa: BLE001
        return None
    if not np.array_equal(again, table):
        return None
    return offsets + steps, new_inits


def fit_affine(sums: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """``(A, B, step)`` with ``sat(rint(float32(float32(s * A) + B * step))) == table`` for every sum ``s`` (rows)
    and channel (columns): ``A`` float32, ``B`` int16 on a power-of-two grid ``step`` where that is exact, else
    float32 (``step`` 1); None if some channel has no affine step (a table that isn't monotone)."""
    q = table.astype(np.float64)
    lo = np.where(q <= 0, -_FAR, q - 0.5)
    hi = np.where(q >= 255, _FAR, q + 0.5)
    s = sums[:, None]

    def bounds(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # the interval B must lie in, given A
        return (lo - a * s).max(axis=0), (hi - a * s).min(axis=0)

    def score(a: np.ndarray) -> np.ndarray:
        # the width U - L is concave in A; beyond a margin of 1 more is worth nothing, and the gentlest
        # slope keeps B (the value at s = 0) small
        low, high = bounds(a)
        return np.minimum(high - low, 2.0) - 1e-9 * np.abs(a)

    g = (np.sqrt(5.0) - 1) / 2  # golden-section search for the maximum, every channel at once
    left, right = np.full(q.shape[1], -256.0), np.full(q.shape[1], 256.0)
    inner_l, inner_r = right - g * (right - left), left + g * (right - left)
    score_l, score_r = score(inner_l), score(inner_r)
    for _ in range(60):
        up = score_l < score_r  # the maximum lies right of inner_l
        left, right = np.where(up, inner_l, left), np.where(up, right, inner_r)
        probe = np.where(up, left + g * (right - left), right - g * (right - left))
        score_probe = score(probe)
        inner_l, inner_r = np.where(up, inner_r, probe), np.where(up, probe, inner_l)
        score_l, score_r = np.where(up, score_r, score_probe), np.where(up, score_probe, score_l)
    slope = (left + right) / 2
    low, high = bounds(slope)
    if (high <= low).any():
        return None
    margin = np.minimum((high - low) / 2, 1.0)
    centre = np.clip(0.0, low + margin, high - margin)
    shift = int(np.floor(np.log2(32000.0 / max(float(np.abs(centre).max()), 1.0))))
    for b, step in ((np.rint(centre * 2.0**shift).astype(np.int16), 2.0**-shift), (centre.astype(np.float32), 1.0)):
        a = _slope_for(b.astype(np.float64) * step, s, lo, hi, slope)
        y = (s.astype(np.float32) * a).astype(np.float32) + (b.astype(np.float32) * np.float32(step))
        if np.array_equal(np.clip(np.rint(y), 0, 255), q):
            return a, b, step
    return None


def _slope_for(b: np.ndarray, s: np.ndarray, lo: np.ndarray, hi: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """The centre of the slopes that keep every sum on its step, given the offsets ``b`` (float32)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = np.where(s > 0, (lo - b) / s, np.where(s < 0, (hi - b) / s, -np.inf)).max(axis=0)
        upper = np.where(s > 0, (hi - b) / s, np.where(s < 0, (lo - b) / s, np.inf)).min(axis=0)
    return np.where(np.isfinite(lower) & np.isfinite(upper), (lower + upper) / 2, fallback).astype(np.float32)
