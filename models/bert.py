"""A BERT-style encoder block built with onnx.helper (rewrite tests and benchmarks): Q/K/V MatMuls sharing
their input, bias Adds, scaled dot-product Softmax, output projection, residual Add,
LayerNormalization."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def bert_block(seq: int = 8, dim: int = 16, seed: int = 0):
    """onnx.ModelProto with input "x" [seq, dim] and output "y" [seq, dim]."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def w(name, *shape, std=0.3):
        inits.append(numpy_helper.from_array(rng.normal(0, std, shape).astype(np.float32), name))
        return name

    def node(op, ins, out, **attrs):
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    for h in "qkv":
        node("Add", [node("MatMul", ["x", w(f"w{h}", dim, dim)], f"{h}_mm"), w(f"b{h}", dim)], h)
    kt = node("Transpose", ["k"], "kt", perm=[1, 0])
    s = node("Mul", [node("MatMul", ["q", kt], "qk"), w("scale", 1, std=0.0)], "scores")
    inits[-1] = numpy_helper.from_array(np.array([1 / np.sqrt(dim)], np.float32), "scale")
    p = node("Softmax", [s], "probs", axis=1)
    o = node("Add", [node("MatMul", [node("MatMul", [p, "v"], "ctx"), w("wo", dim, dim)], "o_mm"),
                     w("bo", dim)], "o")
    r = node("Add", [o, "x"], "res")
    node("LayerNormalization", [r, w("ln_g", dim), w("ln_b", dim)], "y", axis=1, epsilon=1e-5)
    graph = helper.make_graph(nodes, "bert_block",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [seq, dim])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [seq, dim])],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
