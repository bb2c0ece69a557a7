"""The ONNX package's "light" model zoo, with weights re-randomized.

The light models ship their weights as ConstantOfShape nodes (every weight one
repeated value), which hides layout and transpose bugs. `load` replaces each of
them with a random initializer scaled for its use, so activations stay O(1)
through the network and a wrong index shows up as a wrong answer.
"""
from __future__ import annotations

import os

import numpy as np

NAMES = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
         "shufflenet", "squeezenet", "vgg19", "zfnet512")


def model_dir() -> str:
    import onnx

    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def _consumers(graph):
    uses = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, i))
    return uses


def _role(name, uses, depth=0):
    """How a weight is used: (op, input index) of its first real consumer (through Unsqueeze/Reshape)."""
    for node, i in uses.get(name, []):
        if node.op_type in ("Unsqueeze", "Reshape", "Squeeze", "Identity") and depth < 3:
            return _role(node.output[0], uses, depth + 1)
        return node.op_type, i
    return None, None


def _random_weight(shape, role, rng):
    op, idx = role
    shape = tuple(int(d) for d in shape)
    if op == "BatchNormalization":
        if idx == 1:  # scale: below 1 so residual streams (ResNet, ShuffleNet) do not blow up
            return rng.uniform(0.2, 0.6, shape)
        if idx == 4:  # variance: positive
            return rng.uniform(0.5, 1.5, shape)
        return rng.normal(0.0, 0.1, shape)  # bias, mean
    if op in ("Conv", "Gemm", "MatMul") and idx == 1 and len(shape) >= 2:
        fan_in = int(np.prod(shape[1:])) if op == "Conv" else shape[0] if op == "MatMul" else max(shape)
        if op == "Gemm":
            fan_in = shape[1] if len(shape) == 2 else fan_in  # transB=1 in these models: [N, K]
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    if op == "Mul":
        return rng.uniform(0.5, 1.5, shape)
    return rng.normal(0.0, 0.1, shape)


def load(name: str, seed: int = 0):
    """The light-zoo model `name` (see NAMES) with every ConstantOfShape weight made random.

    Args:
        name: e.g. "resnet50" (the file is light_<name>.onnx).
        seed: random seed.
    Returns:
        an onnx.ModelProto (ir_version as shipped).
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(os.path.join(model_dir(), f"light_{name}.onnx"))
    rng = np.random.default_rng(seed)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    uses = _consumers(graph)
    kept, new_inits, shape_names = [], [], set()
    for node in graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in inits:
            kept.append(node)
            continue
        shape = numpy_helper.to_array(inits[node.input[0]])
        value = _random_weight(shape, _role(node.output[0], uses), rng).astype(np.float32)
        new_inits.append(numpy_helper.from_array(value, node.output[0]))
        shape_names.add(node.input[0])
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in kept for name in node.input} | {o.name for o in graph.output}
    keep_inits = [t for t in graph.initializer if t.name in used]  # drop the *_SHAPE tensors and dead ones
    del graph.initializer[:]
    graph.initializer.extend(keep_inits + new_inits)
    keep_inputs = [i for i in graph.input if i.name in used]
    del graph.input[:]
    graph.input.extend(keep_inputs)
    return model


def input_feed(model, seed: int = 0) -> dict:
    """A random N(0,1) feed for the model's one real input (1x3x224x224)."""
    inits = {t.name for t in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in inits]
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in real}
