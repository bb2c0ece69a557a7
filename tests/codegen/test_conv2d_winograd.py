"""Winograd F(2x2,3x3) / F(4x4,3x3) and im2col conv rules against the float64 reference.

Each variant is built by calling its rule directly (so the cost model cannot hand the
case to another rule); errors are max|y - ref| / max|ref| with ref computed in float64.
"""
import numpy as np
import pytest

from kernel_harness import Const, CompiledKernel, _split_inputs

from nnforge.codegen import rules
from nnforge.codegen.conv2d_generic import ConvGeometry
from nnforge.codegen.kernel import CpuTarget, LowerNode
from nnforge.ir import get_op

# register every rule in KERNEL_MODULES order before importing two kernel modules directly
# (the cost model breaks ties by that order)
rules._load_rules()
from nnforge.codegen import conv2d_im2col, conv2d_winograd  # noqa: E402

RNG = np.random.default_rng(0)
RULES = {"f2": conv2d_winograd.conv2d_winograd_f2, "f4": conv2d_winograd.conv2d_winograd_f4,
         "im2col": conv2d_im2col.conv2d_im2col}
# measured on these cases: F2 ~3e-7, F4 ~2e-6, im2col ~4e-7 (direct conv ~5e-7)
BOUND = {"f2": 2e-6, "f4": 2e-5, "im2col": 2e-6}


def conv_node(attrs, inputs):
    opdef = get_op("Conv")
    attrs = opdef.check_attrs(attrs, "conv")
    arrays, kinputs = _split_inputs(inputs)
    outs = opdef.infer_types([k.type for k in kinputs], attrs, "conv")
    return LowerNode("Conv", "conv", attrs, kinputs, outs, CpuTarget.host()), arrays


def rel_error(variant, attrs, inputs) -> float:
    """Build `variant` for the Conv, run it, return its error against the float64 reference."""
    import tvm

    node, arrays = conv_node(attrs, inputs)
    kernel = RULES[variant](node)
    assert kernel is not None, f"{variant} refused {attrs}"
    f = tvm.compile(kernel.func.with_attr("global_symbol", "main"), target=node.target.tvm_target())["main"]
    (y,) = CompiledKernel(kernel, node, f)(arrays)
    (ref,) = get_op("Conv").run([a.astype(np.float64) for a in arrays], node.attrs)
    assert y.shape == ref.shape and y.dtype == np.float32
    return float(np.abs(y - ref).max() / np.abs(ref).max())


def conv_inputs(shape, m, k=3, bias=True, const_weight=True):
    x = RNG.standard_normal(shape).astype("float32")
    w = RNG.standard_normal((m, shape[1], k, k)).astype("float32")
    ins = [x, Const(w) if const_weight else w]
    return ins + [Const(RNG.standard_normal(m).astype("float32"))] if bias else ins


CASES = [  # H/W not multiples of the tile, channel tails, asymmetric pads, batch 2
    dict(shape=(1, 5, 9, 11), m=7, pads=(1, 1, 1, 1)),
    dict(shape=(2, 17, 10, 7), m=20, pads=(0, 1, 2, 0), bias=False),
    dict(shape=(1, 33, 6, 13), m=35, pads=(2, 0, 1, 2)),
    dict(shape=(2, 3, 5, 5), m=1, pads=(0, 0, 0, 0)),
    dict(shape=(1, 40, 15, 15), m=48, pads=(2, 2, 2, 2)),
]


@pytest.mark.parametrize("variant", ["f2", "f4", "im2col"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['shape']}->{c['m']} pads{c['pads']}")
def test_matches_float64_reference(variant, case):
    case = dict(case)
    pads = case.pop("pads")
    err = rel_error(variant, {"pads": pads}, conv_inputs(**case))
    assert err <= BOUND[variant], f"{variant}: relative error {err:.3g}"


@pytest.mark.parametrize("variant", ["f2", "f4", "im2col"])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_relu_matches_float64_reference(variant, bias):
    """activation="Relu" applied in the output stage: about half the outputs are clamped to 0."""
    attrs, ins = {"pads": (1, 1, 1, 1), "activation": "Relu"}, conv_inputs((1, 17, 10, 7), 20, bias=bias)
    err = rel_error(variant, attrs, ins)
    assert err <= BOUND[variant], f"{variant}: relative error {err:.3g}"
    node, arrays = conv_node(attrs, ins)
    (ref,) = get_op("Conv").run(arrays, node.attrs)
    assert ref.min() == 0.0 and 0.2 < (ref == 0).mean() < 0.8  # the reference really clamps


@pytest.mark.parametrize("attrs, k, shape", [
    (dict(strides=(2, 1), pads=(0, 1, 2, 1), dilations=(1, 2)), 3, (2, 5, 11, 9)),
    (dict(pads=(2, 2, 2, 2)), 5, (1, 3, 13, 13)),
    (dict(), 1, (1, 8, 9, 9)),
])
def test_im2col_any_kernel_stride_dilation(attrs, k, shape):
    ins = conv_inputs(shape, 10, k, const_weight=k != 5)  # the 5x5 case packs run-time weights
    assert rel_error("im2col", attrs, ins) <= BOUND["im2col"]


def test_f4_error_larger_than_f2_and_bounded_at_512_channels():
    ins = conv_inputs((1, 512, 16, 16), 16, bias=False)
    e2, e4 = rel_error("f2", {"pads": (1, 1, 1, 1)}, ins), rel_error("f4", {"pads": (1, 1, 1, 1)}, ins)
    assert e2 < e4 <= BOUND["f4"]


@pytest.mark.parametrize("attrs, k, group, dtype, const_weight", [
    (dict(strides=(2, 2)), 3, 1, "float32", True),
    (dict(dilations=(2, 2)), 3, 1, "float32", True),
    (dict(), 3, 2, "float32", True),
    (dict(), 5, 1, "float32", True),
    (dict(), 3, 1, "float32", False),  # U = G w G^T must be computed at compile time
    (dict(), 3, 1, "float64", True),
])
def test_winograd_refuses(attrs, k, group, dtype, const_weight):
    x = np.zeros((1, 4, 8, 8), dtype)
    w = np.ones((4, 4 // group, k, k), dtype)
    node, _ = conv_node({**attrs, "group": group}, [x, Const(w) if const_weight else w])
    assert conv2d_winograd.conv2d_winograd_f2(node) is None
    assert conv2d_winograd.conv2d_winograd_f4(node) is None
    assert (conv2d_im2col.conv2d_im2col(node) is None) == (group != 1 or dtype != "float32")


def test_winograd_refuses_when_weight_traffic_dominates():
    """512 channels at 7x7: F(4x4) has 4 tiles, each transformed weight is used 4 times."""
    node, _ = conv_node({"pads": (1, 1, 1, 1)}, conv_inputs((1, 512, 7, 7), 512, bias=False))
    assert conv2d_winograd.conv2d_winograd_f4(node) is None


def test_flop_count_and_selection():
    """F4's kernel FLOPs are well under the direct conv's; the family override forces it, and
    the family off removes both Winograd rules."""
    node, _ = conv_node({"pads": (1, 1, 1, 1)}, conv_inputs((1, 64, 28, 28), 64))
    direct = get_op("Conv").cost([i.type for i in node.inputs], node.outputs, node.attrs).flops
    f4 = conv2d_winograd.conv2d_winograd_f4(node).extra["flops"]
    gemm = 2 * 36 * 49 * 64 * 64  # 7x7 tiles, no padding anywhere here
    assert gemm < f4 < 1.2 * gemm and f4 < direct / 3
    assert rules.select(node, rules.ScheduleOptions({"winograd": True})).rule.family == "winograd"
    off = rules.select(node, rules.ScheduleOptions({"winograd": False}))
    assert off.rule.family != "winograd" and "winograd" not in off.explain()


def _to_blocks(a: np.ndarray, b: int) -> np.ndarray:
    n, c, h, w = a.shape
    return np.ascontiguousarray(a.reshape(n, c // b, b, h, w).transpose(0, 1, 3, 4, 2))


@pytest.mark.parametrize("variant", ["f2", "f4"])
@pytest.mark.parametrize("hw, pads", [(12, (1, 1, 1, 1)), (9, (1, 1, 1, 1)), (10, (0, 2, 1, 0))],
                         ids=["tiles-exact", "tile-tail", "asymmetric-tail"])
def test_blocked_layouts_match_float64_reference(variant, hw, pads):
    """NCHW16c in and out (as between two convs in a model): where the tiles cover the output
    exactly the inverse transform writes it directly (no unpack block), else it is cropped."""
    import tvm

    lanes = CpuTarget.host().vector_lanes
    attrs = {"pads": pads, "activation": "Relu"}
    ins = conv_inputs((1, 2 * lanes, hw, hw), 3 * lanes)
    node, arrays = conv_node(attrs, ins)
    node = LowerNode(node.op, node.name, node.attrs, node.inputs, node.outputs, node.target, (lanes,), lanes)
    kernel = RULES[variant](node)
    assert kernel.in_blocks[0] == lanes and kernel.out_block == lanes
    m = 2 if variant == "f2" else 4
    exact = all(s % m == 0 for s in node.outputs[0].shape[2:])
    assert ("unpack" in kernel.func.script()) != exact
    f = tvm.compile(kernel.func.with_attr("global_symbol", "main"), target=node.target.tvm_target())["main"]
    (ref,) = get_op("Conv").run([a.astype(np.float64) for a in arrays], node.attrs)
    arrays[0] = _to_blocks(arrays[0], lanes)
    params = [arrays[a] if isinstance(a, int) else a for a in kernel.args]
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(np.ascontiguousarray(p), dev) for p in params]
    args.append(tvm.runtime.tensor(np.zeros(_to_blocks(ref, lanes).shape, "float32"), dev))
    f(*args)
    err = np.abs(args[-1].numpy() - _to_blocks(ref, lanes)).max() / np.abs(ref).max()
    assert err <= BOUND[variant], f"{variant}: relative error {err:.3g}"


@pytest.mark.parametrize("variant", ["f2", "f4"])
@pytest.mark.parametrize("block_bytes, blocked, channels", [
    (1 << 20, False, 19), (20_000, False, 19), (20_000, True, 19), (20_000, False, 3)],
    ids=["whole-image-blocks", "one-row-blocks", "one-row-blocks-nchw16c", "one-channel-block"])
def test_row_blocks_match_float64_reference(monkeypatch, variant, block_bytes, blocked, channels):
    """The per-block schedule (all stages in one parallel loop over blocks of tile rows), forced
    on a small layer: batch 2, tile tails, asymmetric pads, channel tails (one channel block:
    VGG's first conv, 3 channels)."""
    import tvm

    monkeypatch.setattr(conv2d_winograd, "STAGED_BYTES", 0)
    monkeypatch.setattr(conv2d_winograd, "BLOCK_BYTES", block_bytes)
    lanes = CpuTarget.host().vector_lanes
    attrs = {"pads": (1, 0, 2, 1), "activation": "Relu"}
    ins = conv_inputs((2, channels, 13, 17), 2 * lanes)
    node, arrays = conv_node(attrs, ins)
    if blocked:
        node = LowerNode(node.op, node.name, node.attrs, node.inputs, node.outputs, node.target, (), lanes)
    kernel = RULES[variant](node)
    m = 2 if variant == "f2" else 4
    plan = conv2d_winograd.plan_winograd(ConvGeometry.of(node), m, lanes)
    assert plan.row_block == (1 if block_bytes < 1 << 20 else plan.nth)  # one block row, or the whole image
    assert f"blocks of {plan.row_block} tile rows" in kernel.schedule
    f = tvm.compile(kernel.func.with_attr("global_symbol", "main"), target=node.target.tvm_target())["main"]
    (ref,) = get_op("Conv").run([a.astype(np.float64) for a in arrays], node.attrs)
    params = [arrays[a] if isinstance(a, int) else a for a in kernel.args]
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(np.ascontiguousarray(p), dev) for p in params]
    want = _to_blocks(ref, lanes) if blocked else ref
    args.append(tvm.runtime.tensor(np.zeros(want.shape, "float32"), dev))
    f(*args)
    err = np.abs(args[-1].numpy() - want).max() / np.abs(ref).max()
    assert err <= BOUND[variant], f"{variant}: relative error {err:.3g}"
