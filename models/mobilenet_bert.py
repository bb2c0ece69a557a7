"""MobileNet-v1-style and BERT-style encoder models (random He/Xavier weights, onnx.helper), the
quantization report's other two architectures next to builders.resnet."""
from __future__ import annotations

import numpy as np
from onnx import helper

from .builders import _Builder


def mobilenet(num_classes: int = 1000, image: int = 224, width: int = 32, seed: int = 0):
    """A MobileNet-v1-style classifier: depthwise 3x3 + pointwise 1x1 blocks with BatchNorm and
    ReLU6 (Clip 0..6), input "input" [1,3,image,image], output "logits" [1, num_classes].

    Args:
        num_classes: logits produced.
        image: input height = width.
        width: channels of the first conv (32 in the paper; later stages double it).
        seed: weight seed.
    """
    b = _Builder(seed)
    six = [b.const(np.array(0.0, np.float32), "zero"), b.const(np.array(6.0, np.float32), "six")]

    def conv_bn_relu6(x, cin, cout, k, stride=1, group=1):
        y = b.conv_bn(x, cin, cout, k, stride, relu=False, group=group)
        return b.op("Clip", [y, *six])

    x = conv_bn_relu6("input", 3, width, 3, stride=2)
    cin = width
    # (output channels as a multiple of width, stride) of the paper's first blocks
    for mult, stride in ((2, 1), (4, 2), (4, 1), (8, 2), (8, 1), (16, 2), (16, 1), (32, 2)):
        x = conv_bn_relu6(x, cin, cin, 3, stride, group=cin)  # depthwise
        x = conv_bn_relu6(x, cin, width * mult, 1)             # pointwise
        cin = width * mult
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    w = b.weight((num_classes, cin), np.sqrt(1.0 / cin))
    bias = b.const(np.zeros(num_classes, np.float32), "fc_b")
    b.nodes.append(helper.make_node("Gemm", [x, w, bias], ["logits"], name="fc", transB=1))
    return b.model("input", [1, 3, image, image], "logits", [1, num_classes], "mobilenet")


def bert(layers: int = 2, seq: int = 32, dim: int = 128, heads: int = 4, num_classes: int = 16,
         seed: int = 0):
    """A BERT-style encoder: per layer multi-head self-attention (Q/K/V/output projections with
    bias, scaled softmax), residual + LayerNorm, a GELU (Erf) feed-forward of 4*dim, residual +
    LayerNorm; then a classifier on the first token. Xavier weights.

    Args:
        layers, seq, dim, heads: encoder size (dim divisible by heads).
        num_classes: logits of the classifier head.
        seed: weight seed.
    Returns:
        onnx.ModelProto with input "x" [seq, dim] and output "logits" [1, num_classes].
    """
    b = _Builder(seed)
    hd = dim // heads

    def dense(x, cin, cout):
        y = b.op("MatMul", [x, b.weight((cin, cout), np.sqrt(2.0 / (cin + cout)))])
        return b.op("Add", [y, b.const(b.rng.normal(0, 0.02, cout).astype(np.float32), "bias")])

    def layer_norm(x):
        return b.op("LayerNormalization", [x, b.const(np.ones(dim, np.float32), "ln_g"),
                                           b.const(np.zeros(dim, np.float32), "ln_b")], axis=-1)

    def split_heads(x):  # [seq, dim] -> [heads, seq, hd]
        y = b.op("Reshape", [x, b.const(np.array([seq, heads, hd], np.int64), "shape")])
        return b.op("Transpose", [y], perm=[1, 0, 2])

    x = "x"
    for _ in range(layers):
        q, k, v = (split_heads(dense(x, dim, dim)) for _ in range(3))
        scores = b.op("Mul", [b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 2, 1])]),
                              b.const(np.array(1 / np.sqrt(hd), np.float32), "scale")])
        ctx = b.op("MatMul", [b.op("Softmax", [scores], axis=-1), v])
        ctx = b.op("Reshape", [b.op("Transpose", [ctx], perm=[1, 0, 2]),
                               b.const(np.array([seq, dim], np.int64), "shape")])
        x = layer_norm(b.op("Add", [dense(ctx, dim, dim), x]))
        h = dense(x, dim, 4 * dim)
        gelu = b.op("Mul", [b.op("Mul", [h, b.op("Add", [b.op("Erf", [b.op("Div", [h, b.const(
            np.array(np.sqrt(2), np.float32), "sqrt2")])]), b.const(np.array(1, np.float32), "one")])]),
            b.const(np.array(0.5, np.float32), "half")])
        x = layer_norm(b.op("Add", [dense(gelu, 4 * dim, dim), x]))
    first = b.op("Slice", [x, *(b.const(np.array(v, np.int64), n) for v, n in
                                ((([0], "starts")), ([1], "ends")))])
    b.nodes.append(helper.make_node("MatMul", [first, b.weight((dim, num_classes), np.sqrt(1.0 / dim))],
                                    ["logits"], name="classifier"))
    return b.model("x", [seq, dim], "logits", [1, num_classes], "bert")
