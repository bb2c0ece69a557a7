"""Runs one ONNX node with onnx.reference (or ONNX Runtime): the oracle for the op tests."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator

OPSET = 19


def run_onnx_node(op: str, inputs: list, attrs: dict, n_outputs: int = 1,
                  oracle: str = "reference") -> list:
    """Outputs of a one-node ONNX model.

    Args:
        op: ONNX op type.
        inputs: arrays (None for a skipped optional input).
        attrs: ONNX attributes.
        n_outputs: number of outputs to request.
        oracle: "reference" (onnx.reference) or "ort" (ONNX Runtime).
    Returns:
        list of numpy arrays.
    """
    names = ["" if a is None else f"in{i}" for i, a in enumerate(inputs)]
    fed = {n: np.asarray(a) for n, a in zip(names, inputs) if n}
    outs = [f"out{i}" for i in range(n_outputs)]
    graph = helper.make_graph(
        [helper.make_node(op, names, outs, **attrs)], "one_node",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in fed.items()],
        [helper.make_value_info(o, onnx.TypeProto()) for o in outs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    if oracle == "ort":
        import onnxruntime

        model.ir_version = 9
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        session = onnxruntime.InferenceSession(model.SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        return session.run(None, fed)
    return ReferenceEvaluator(model).run(None, fed)
