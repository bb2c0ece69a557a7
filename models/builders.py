"""Real architectures with random weights, built with onnx.helper (no downloads, no torch).

Used by `make demo`, tests and benchmarks. Weights are He-initialized and BatchNorm
statistics random but sane, so activations stay O(1) and numeric comparisons mean
something.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9  # what onnxruntime here accepts (<= 13)


class _Builder:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def weight(self, shape, std: float, base: str = "w") -> str:
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(self.rng.normal(0, std, shape).astype(np.float32), n))
        return n

    def const(self, array, base: str = "c") -> str:
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), n))
        return n

    def op(self, op_type: str, inputs, **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def conv_bn(self, x, cin, cout, k, stride=1, relu=True, group=1) -> str:
        w = self.weight((cout, cin // group, k, k), np.sqrt(2.0 / (cin // group * k * k)))
        y = self.op("Conv", [x, w], kernel_shape=[k, k], strides=[stride, stride],
                    pads=[k // 2] * 4, group=group)
        bn = [self.const(self.rng.uniform(0.3, 0.7, cout).astype(np.float32), "gamma"),
              self.const(self.rng.normal(0, 0.1, cout).astype(np.float32), "beta"),
              self.const(self.rng.normal(0, 0.1, cout).astype(np.float32), "mean"),
              self.const(self.rng.uniform(0.5, 1.5, cout).astype(np.float32), "var")]
        y = self.op("BatchNormalization", [y] + bn, epsilon=1e-5)
        return self.op("Relu", [y]) if relu else y

    def model(self, x_name, x_shape, out, out_shape, name):
        graph = helper.make_graph(
            self.nodes, name, [helper.make_tensor_value_info(x_name, TensorProto.FLOAT, x_shape)],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)], initializer=self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                 ir_version=IR_VERSION, producer_name="nnforge.models")


def resnet(depth: int = 18, num_classes: int = 1000, image: int = 224, width: int = 64, seed: int = 0):
    """A ResNet-18/34-style classifier (basic blocks), input "input" [1,3,image,image].

    Args:
        depth: 18 or 34.
        num_classes: logits produced.
        image: input height = width.
        width: channels of the first stage (64 in the paper).
        seed: weight seed.
    Returns:
        onnx.ModelProto whose output "logits" is [1, num_classes].
    """
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}[depth]
    b = _Builder(seed)
    x = b.conv_bn("input", 3, width, 7, stride=2)
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = width
    for stage, n in enumerate(blocks):
        cout = width * 2 ** stage
        for i in range(n):
            stride = 2 if i == 0 and stage > 0 else 1
            y = b.conv_bn(x, cin, cout, 3, stride)
            y = b.conv_bn(y, cout, cout, 3, 1, relu=False)
            skip = x if stride == 1 and cin == cout else b.conv_bn(x, cin, cout, 1, stride, relu=False)
            x = b.op("Relu", [b.op("Add", [y, skip])])
            cin = cout
    x = b.op("GlobalAveragePool", [x])
    x = b.op("Flatten", [x], axis=1)
    w = b.weight((num_classes, cin), np.sqrt(1.0 / cin))
    bias = b.const(np.zeros(num_classes, np.float32), "fc_b")
    b.nodes.append(helper.make_node("Gemm", [x, w, bias], ["logits"], name="fc", transB=1))
    return b.model("input", [1, 3, image, image], "logits", [1, num_classes], f"resnet{depth}")
