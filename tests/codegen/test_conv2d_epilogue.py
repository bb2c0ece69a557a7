"""The Conv epilogue in every conv rule: bias + residual (input 3), then each fused activation,
against the registry's numpy reference.

Each case forces one schedule family (and checks the schedule it got), so a rule that stops
applying fails here instead of silently handing the case to another rule.
"""
import numpy as np
import pytest

from kernel_harness import Const, assert_close, compile_kernel

from nnforge.codegen.rules import ScheduleOptions
from nnforge.errors import CompileError, ShapeError
from nnforge.ir import get_op
from nnforge.ir.ops.nn import CONV_ACTIVATIONS

RNG = np.random.default_rng(1)

# (family forced, schedule description must contain, conv case)
FAMILIES = [
    ("direct", "direct, tile", dict(shape=(1, 24, 11, 13), m=40, k=3, pads=(1, 1, 1, 1))),
    ("direct", "direct, tile", dict(shape=(1, 12, 9, 9), m=18, k=3, pads=(1, 1, 1, 1), group=3)),
    ("direct", "NCHW->", dict(shape=(1, 40, 9, 11), m=36, k=1)),  # 1x1 GEMM, channel tail
    ("direct", "depthwise", dict(shape=(1, 20, 9, 13), m=20, k=3, pads=(1, 1, 1, 1), group=20)),
    ("winograd", "winograd", dict(shape=(1, 17, 10, 7), m=20, k=3, pads=(1, 1, 1, 1))),
    ("im2col", "im2col", dict(shape=(1, 5, 9, 8), m=7, k=5, strides=(2, 1), pads=(2, 2, 2, 2))),
    ("direct", "generic", dict(shape=(1, 6, 10, 9), m=8, k=3, pads=(1, 1, 1, 1), dtype="float64")),
]


def _case_arrays(shape, m, k, group=1, dtype="float32", **attrs):
    x = RNG.standard_normal(shape).astype(dtype)
    w = RNG.standard_normal((m, shape[1] // group, k, k)).astype(dtype)
    b = RNG.standard_normal(m).astype(dtype)
    out = get_op("Conv").run([x, w, b], get_op("Conv").check_attrs({"group": group, **attrs}))[0]
    residual = (3 * RNG.standard_normal(out.shape)).astype(dtype)  # large: moves values across 0 and 6
    return {"group": group, **attrs}, [x, Const(w), Const(b), residual]


def _check(family, expect, case, activation, residual=True):
    attrs, inputs = _case_arrays(**case)
    attrs["activation"] = activation
    inputs = inputs if residual else inputs[:3]
    kernel = compile_kernel("Conv", attrs, inputs, options=ScheduleOptions({family: True}))
    assert expect in kernel.kernel.schedule
    arrays = [np.asarray(i.data if isinstance(i, Const) else i) for i in inputs]
    (actual,) = kernel(arrays)
    opdef = get_op("Conv")
    (expected,) = opdef.run(arrays, opdef.check_attrs(attrs))
    assert_close(actual, expected, rtol=2e-5 if family == "winograd" else None,
                 what=f"{family} {activation!r} residual={residual}: ")


@pytest.mark.parametrize("family, expect, case", FAMILIES, ids=lambda v: v if isinstance(v, str) else None)
def test_residual_relu_in_every_family(family, expect, case):
    """ResNet's relu(conv(x) + b + shortcut) in each family's epilogue."""
    _check(family, expect, case, "Relu")


@pytest.mark.parametrize("activation", [a for a in CONV_ACTIVATIONS if a not in ("", "Relu")])
@pytest.mark.parametrize("family, expect, case", [FAMILIES[0], FAMILIES[3], FAMILIES[4]],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_activations(family, expect, case, activation):
    """Relu6, HardSwish and Sigmoid with and without a residual."""
    _check(family, expect, case, activation, residual=activation != "Sigmoid")


def test_reference_applies_residual_before_activation():
    """The oracle itself: relu6(conv + b + r) clamps at both ends, so this is not vacuous."""
    attrs, inputs = _case_arrays(shape=(1, 4, 6, 6), m=8, k=3, pads=(1, 1, 1, 1))
    arrays = [np.asarray(i.data if isinstance(i, Const) else i) for i in inputs]
    opdef = get_op("Conv")
    linear = opdef.run(arrays[:3], opdef.check_attrs(attrs))[0] + arrays[3]
    (y,) = opdef.run(arrays, opdef.check_attrs({**attrs, "activation": "Relu6"}))
    np.testing.assert_allclose(y, np.clip(linear, 0, 6), rtol=1e-6)
    assert (y == 0).any() and (y == 6).any()


def test_residual_of_wrong_shape_is_a_shape_error():
    attrs, inputs = _case_arrays(shape=(1, 4, 6, 6), m=8, k=3)  # no padding: output 4x4
    with pytest.raises(ShapeError, match="residual input r"):
        get_op("Conv").infer_types([i.type for i in _types(inputs[:3] + [np.zeros((1, 8, 6, 6), "float32")])],
                                   get_op("Conv").check_attrs(attrs), "conv")


def test_unknown_activation_is_a_clear_error():
    attrs, inputs = _case_arrays(shape=(1, 4, 6, 6), m=8, k=3)
    with pytest.raises((ShapeError, CompileError), match="activation 'Gelu'"):
        compile_kernel("Conv", {**attrs, "activation": "Gelu"}, inputs[:3])


def _types(inputs):
    from kernel_harness import _split_inputs

    return _split_inputs(inputs)[1]


def test_resnet_block_compiles_with_residual_convs_and_exports_for_ort():
    """End to end: `simplify` fuses each block's relu(conv + shortcut) into the conv (verified
    rules), the compiled model matches the interpreter on the original graph, and the fused
    graph exports to ONNX (Conv + Add + Relu) that ONNX Runtime runs to the same numbers."""
    import onnxruntime as ort

    import nnforge
    from nnforge.driver import import_graph
    from nnforge.frontend.onnx_export import export_model
    from nnforge.ir import interpret
    from nnforge.models.builders import resnet
    from nnforge.passes import PassManager

    model = resnet(depth=18, num_classes=10, image=32, width=8, seed=5)
    graph = import_graph(model)
    fused = PassManager(["simplify"]).run(graph)
    assert sum(len(n.inputs) == 4 for n in fused.nodes if n.op == "Conv") == 8
    x = {"input": RNG.standard_normal((1, 3, 32, 32)).astype(np.float32)}
    (expected,) = interpret(graph, x)
    (actual,) = nnforge.compile(model).run(x)
    assert_close(actual, expected, rtol=1e-4, what="compiled resnet-18: ")
    session = ort.InferenceSession(export_model(fused).SerializeToString(), providers=["CPUExecutionProvider"])
    assert_close(session.run(None, x)[0], expected, rtol=1e-4, what="exported fused resnet-18 in ORT: ")


@pytest.mark.parametrize("activation", ["Relu6", "HardSwish", "Sigmoid"])
def test_fused_conv_exports_to_onnx(activation):
    """Conv(x, w, b, r){activation} exports as Conv + Add + the activation (Relu6 as Clip(0, 6))
    and ONNX Runtime computes what the interpreter does."""
    import onnxruntime as ort

    from nnforge.frontend.onnx_export import export_model
    from nnforge.ir import Graph, TensorType, interpret

    attrs, inputs = _case_arrays(shape=(1, 4, 6, 6), m=8, k=3, pads=(1, 1, 1, 1))
    g = Graph("fused")
    x, r = g.add_input("x", TensorType.of(inputs[0])), g.add_input("r", TensorType.of(inputs[3]))
    w, b = g.constant(inputs[1].data, "w"), g.constant(inputs[2].data, "b")
    g.set_outputs(g.add_node("Conv", [x, w, b, r], {**attrs, "activation": activation}))
    feed = {"x": inputs[0], "r": inputs[3]}
    session = ort.InferenceSession(export_model(g).SerializeToString(), providers=["CPUExecutionProvider"])
    assert_close(session.run(None, feed)[0], interpret(g, feed)[0], rtol=1e-5, what=f"{activation} export: ")
