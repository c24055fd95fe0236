"""What an exported ONNX graph's values are — shapes, constants — for the passes that rewrite the graph after
torch.onnx (:mod:`~bnnc.export.batchnorm`, :mod:`~bnnc.export.requantize`)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def shapes(proto: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Every value's shape ONNX shape inference knows (``None`` for a dimension it can't tell), initializers'
    included."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    out: dict[str, list[int | None]] = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    for i in proto.graph.initializer:
        out[i.name] = list(i.dims)
    return out


def constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Every initializer's value, also under the names of the Identity nodes through which the exporter
    shares equal initializers."""
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values
