"""A ResNet-18-style int8 graph in the power-of-two quantized form VTA runs (random weights).

The stem (7x7 conv, ReLU, max pool) is float, then activations are quantized to int8
(floor(x * 2^q + 0.5), clipped to +-127). Its weights are small integers times 2^-5, so for
integer-valued inputs (`sample_input`) every float sum is exact and the int8 activations do not
depend on summation order: the CPU's float kernels and the interpreter agree bit for bit. The four stages of two basic blocks are QConv nodes in
power-of-two mode (multiplier 1, one shift, zero points 0): 3x3 conv + ReLU, 3x3 conv, and a 1x1
stride-2 projection where the shape changes. The residual add is int32 Add + Clip [0, 127] + Cast
(one activation scale throughout). The head (global average pool, classifier) is float.
Each layer's shift is the smallest that keeps saturation under 1% on a sample input, and the bias
is random within +-8 output units, so outputs use the int8 range without being clipped away.
The graph is nnforge IR (QConv has no ONNX form); `nnforge compile` also reads its text form.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, TensorType, get_op

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride of the first block)


class _Builder:
    """Adds nodes to a graph and propagates one sample input alongside, to pick shifts."""

    def __init__(self, graph: Graph, rng):
        self.g, self.rng = graph, rng
        self.sample = {}  # value name -> sample activation

    def node(self, op, inputs, attrs=None, name=None):
        (out,) = self.g.add_node(op, inputs, attrs, name)
        arrays = [v.data if v.is_constant else self.sample[v.name] for v in inputs]
        self.sample[out.name] = get_op(op).run(arrays, out.producer.attrs)[0]
        return out

    def qconv(self, x, cout: int, k: int, stride: int, relu: bool, name: str):
        w = self.g.constant(self.rng.integers(-127, 128, (cout, x.type.shape[1], k, k), dtype=np.int8), f"{name}_w")
        attrs = {"strides": [stride, stride], "pads": [k // 2] * 4, "activation": "Relu" if relu else ""}
        xs = self.sample[x.name]
        for shift in range(16):
            y = get_op("QConv").run([xs, w.data], {**get_op("QConv").check_attrs(attrs), "shift": (shift,)})[0]
            if np.mean(np.abs(y.astype(np.int32)) >= 127) < 0.01:
                break
        bias = self.g.constant(self.rng.integers(-8 << shift, 8 << shift, cout).astype(np.int32), f"{name}_b")
        return self.node("QConv", [x, w, bias], {**attrs, "shift": [shift]}, name)

    def residual_add(self, a, b, name: str):
        wide = [self.node("Cast", [v], {"to": "int32"}, f"{name}_{v.name}_i32") for v in (a, b)]
        s = self.node("Add", wide, name=f"{name}_add")
        return self.node("Cast", [self.node("Clip", [s], {"min": 0, "max": 127}, f"{name}_clip")], {"to": "int8"},
                         f"{name}_i8")


def sample_input(shape, rng) -> np.ndarray:
    """An integer-valued float32 input (values -4..4) for which the float stem is exact."""
    return rng.integers(-4, 5, shape).astype(np.float32)


def resnet18_int8(input_shape=(1, 3, 32, 32), num_classes: int = 10, seed: int = 0) -> Graph:
    """The graph: input "input" float32 NCHW; outputs the int8 features of the last stage and the
    float logits.

    Args:
        input_shape: (N, 3, H, W); H and W divisible by 32 keep every stage non-empty.
        num_classes: classifier width.
        seed: weights, biases and the sample input used to choose shifts.
    Returns:
        an ir.Graph with 19 QConv nodes (16 3x3, three 1x1 projections).
    """
    rng = np.random.default_rng(seed)
    g = Graph("resnet18_int8")
    x = g.add_input("input", TensorType("float32", tuple(input_shape)))
    b = _Builder(g, rng)
    b.sample["input"] = sample_input(input_shape, rng)
    stem_w = (rng.integers(-8, 9, (64, input_shape[1], 7, 7)) / 32).astype(np.float32)
    y = b.node("Conv", [x, g.constant(stem_w, "stem_w")], {"strides": [2, 2], "pads": [3] * 4,
                                                            "activation": "Relu"}, "stem")
    y = b.node("MaxPool", [y], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1] * 4}, "stem_pool")
    q = float(2 ** np.floor(np.log2(100 / np.percentile(b.sample[y.name], 99.9))))  # 99.9% of values < 100
    y = b.node("Floor", [b.node("Add", [b.node("Mul", [y, g.constant(np.float32(q), "in_scale")], name="quant_scale"),
                                       g.constant(np.float32(0.5), "half")], name="quant_round")], name="quant_floor")
    y = b.node("Cast", [b.node("Clip", [y], {"min": -127, "max": 127}, "quant_clip")], {"to": "int8"}, "quant")
    for s, (cout, stride) in enumerate(STAGES, 1):
        for blk in range(2):
            st, name = (stride if blk == 0 else 1), f"layer{s}_{blk}"
            h = b.qconv(y, cout, 3, st, True, f"{name}_conv1")
            h = b.qconv(h, cout, 3, 1, False, f"{name}_conv2")
            short = y if st == 1 and y.type.shape[1] == cout else b.qconv(y, cout, 1, st, False, f"{name}_down")
            y = b.residual_add(h, short, name)
    features = y
    f = b.node("GlobalAveragePool", [b.node("Cast", [y], {"to": "float32"}, "dequant")], name="pool")
    f = b.node("Reshape", [f], {"shape": [input_shape[0], STAGES[-1][0]]}, "flatten")
    fc_w = rng.normal(0, 1 / 64 / np.sqrt(STAGES[-1][0]), (STAGES[-1][0], num_classes)).astype(np.float32)
    logits = b.node("Gemm", [f, g.constant(fc_w, "fc_w"), g.constant(np.zeros(num_classes, np.float32), "fc_b")],
                    name="fc")
    g.set_outputs([features, logits])
    return g
