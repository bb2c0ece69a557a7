"""Builds small ONNX models for the frontend tests and checks import against an oracle."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from nnforge.frontend import import_model
from nnforge.ir import interpret, verify

IR_VERSION = 10  # opset 21 needs IR 10; onnxruntime here reads up to 13


class C:
    """Marks a node input as a constant (an initializer) rather than a run-time input."""

    def __init__(self, array):
        self.array = np.asarray(array)


def tensor_info(name: str, dtype, shape):
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape)


def model(nodes, inputs, outputs, initializers=(), opset: int = 13, ir_version: int = IR_VERSION):
    """An ONNX model.

    Args:
        nodes: NodeProtos (any order).
        inputs: {name: array} run-time inputs (their dtype and shape are declared).
        outputs: names of the graph outputs (declared with no type: onnx infers it).
        initializers: {name: array}.
        opset: default-domain opset.
    Returns:
        a ModelProto.
    """
    graph = helper.make_graph(
        nodes, "test", [tensor_info(n, a.dtype, a.shape) for n, a in inputs.items()],
        [helper.make_value_info(o, onnx.TypeProto()) for o in outputs],
        initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in dict(initializers).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def one_node(op: str, inputs: list, attrs: dict | None = None, opset: int = 13, n_outputs: int = 1):
    """A one-node model and its feeds.

    Args:
        op: ONNX op type.
        inputs: arrays (run-time inputs), C(array) (initializers) or None (omitted).
        attrs: ONNX attributes.
        opset: default-domain opset.
        n_outputs: how many outputs the node declares (all are graph outputs).
    Returns:
        (ModelProto, feeds dict).
    """
    names, feeds, consts = [], {}, {}
    for i, a in enumerate(inputs):
        if a is None:
            names.append("")
        elif isinstance(a, C):
            names.append(f"c{i}")
            consts[f"c{i}"] = a.array
        else:
            names.append(f"in{i}")
            feeds[f"in{i}"] = np.asarray(a)
    outs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op, names, outs, name=f"{op.lower()}_node", **(attrs or {}))
    return model([node], feeds, outs, consts, opset), feeds


def oracle(proto, feeds: dict, use: str = "ort") -> list:
    """Outputs from ONNX Runtime ("ort") or onnx.reference ("ref")."""
    if use == "ref":
        return ReferenceEvaluator(proto).run(None, feeds)
    import onnxruntime

    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def check_import(proto, feeds: dict, use: str = "ort", rtol: float = 1e-5, atol: float = 1e-6,
                 input_shapes=None):
    """Import `proto`, verify the graph, and compare the interpreter with the oracle.

    Returns:
        the imported graph (for structural assertions).
    """
    graph = import_model(proto, input_shapes=input_shapes)
    verify(graph)
    got = interpret(graph, feeds)
    want = oracle(proto, feeds, use)
    assert [v.name for v in graph.outputs] == [v.name for v in proto.graph.output]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return graph
