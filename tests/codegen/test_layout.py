"""NCHW{b}c layout propagation (codegen/layout.py, cpu.py): which values are stored blocked,
and whole compiled graphs against the numpy interpreter on every layout path (conv chains,
odd channel counts that do not block, grouped and depthwise convs, residual convs, pools,
concat, elementwise ops, values read both blocked and plain, graph outputs)."""
import numpy as np
import pytest

from kernel_harness import assert_close

from nnforge.codegen.kernel import CpuTarget
from nnforge.codegen.layout import assign_blocks
from nnforge.codegen.rules import ScheduleOptions
from nnforge.driver import compile_graph
from nnforge.ir import Graph, TensorType, interpret, verify

RNG = np.random.default_rng(2)
B = CpuTarget.host().vector_lanes


class Net:
    """A small graph builder: convs with random constant weights and biases."""

    def __init__(self, c: int, hw: int):
        self.g = Graph("layout")
        self.x = self.g.add_input("x", TensorType("float32", (1, c, hw, hw)))

    def conv(self, x, m, k=3, group=1, residual=None, **attrs):
        c = x.type.shape[1]
        w = self.g.constant((RNG.standard_normal((m, c // group, k, k)) / np.sqrt(c * k * k / group))
                            .astype(np.float32), "w")
        b = self.g.constant(RNG.standard_normal(m).astype(np.float32), "b")
        ins = [x, w, b] + ([residual] if residual is not None else [])
        return self.g.add_node("Conv", ins, {"pads": (k // 2,) * 4, "group": group, **attrs})[0]

    def op(self, op, *xs, **attrs):
        return self.g.add_node(op, list(xs), attrs)[0]

    def compile_and_check(self, *outputs, options=None):
        """Compile, compare every output with the interpreter; returns the inspect report."""
        self.g.set_outputs(list(outputs))
        verify(self.g)
        feed = {"x": RNG.standard_normal(self.x.type.shape).astype(np.float32)}
        expected = interpret(self.g, feed)
        model = compile_graph(self.g, CpuTarget.host(), options)
        for got, want, v in zip(model.run(feed), expected, outputs):
            assert_close(got, want, rtol=1e-4, what=f"output {v.name}: ")
        return model.report


def _ops(report, op):
    return [r for r in report if r["op"] == op]


def test_conv_chain_stays_blocked_between_convs():
    """conv -> relu -> maxpool -> conv -> add -> conv: only the graph input and output convert."""
    net = Net(3 * B // 2, 15)  # 24 input channels (not a multiple of 16): read NCHW by the first conv
    a = net.conv(net.x, 2 * B)
    p = net.op("MaxPool", net.op("Relu", a), kernel_shape=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1))
    b = net.conv(p, 2 * B, k=1)
    s = net.op("Add", b, p)
    c = net.conv(s, B + 3, activation="Relu")  # 19 outputs: written NCHW
    blocks = assign_blocks(net.g, B)
    assert set(blocks) == {a.name, p.name, b.name, s.name} | {net.g.nodes[1].outputs[0].name}
    report = net.compile_and_check(c)
    assert _ops(report, "LayoutTransform") == []
    assert [r["layout"] for r in _ops(report, "Conv")] == [
        f"NCHW -> NCHW{B}c", f"NCHW{B}c -> NCHW{B}c", f"NCHW{B}c -> NCHW"]
    assert _ops(report, "MaxPool")[0]["layout"] == f"NCHW{B}c -> NCHW{B}c"


def test_blocked_value_that_is_also_a_graph_output_and_read_plain():
    """A blocked conv output that is a graph output and feeds a Reshape: one transform to NCHW,
    shared by both; the last conv's output only leaves the graph, so it is written NCHW."""
    net = Net(B, 9)
    a = net.conv(net.x, B)
    b = net.conv(a, B)
    flat = net.op("Reshape", a, shape=(1, B * 81))
    report = net.compile_and_check(b, a, flat)
    assert [r["node"] for r in _ops(report, "LayoutTransform")] == [f"{a.name}@NCHW"]


@pytest.mark.parametrize("pool", ["AveragePool", "GlobalAveragePool", "GlobalMaxPool"])
def test_pools_on_blocked_values(pool):
    net = Net(B, 11)
    a = net.conv(net.x, 2 * B, activation="Relu")
    attrs = dict(kernel_shape=(3, 3), strides=(2, 2), pads=(0, 1, 1, 0)) if pool == "AveragePool" else {}
    p = net.op(pool, a, **attrs)
    c = net.conv(p, B, k=1)
    report = net.compile_and_check(net.op("Sigmoid", c))
    assert _ops(report, pool)[0]["layout"] == f"NCHW{B}c -> NCHW{B}c"


def test_concat_of_blocked_and_odd_channels():
    """Concat along channels stays blocked when every part is a multiple of the block; a part
    of odd channels makes it plain (the blocked parts convert)."""
    net = Net(B, 10)
    a, b = net.conv(net.x, B, k=1), net.conv(net.x, 2 * B)
    blocked = net.op("Concat", a, b, axis=1)
    odd = net.op("Concat", a, net.conv(net.x, 5), axis=1)
    report = net.compile_and_check(net.conv(blocked, B), net.conv(odd, B))
    layouts = [r["layout"] for r in _ops(report, "Concat")]
    assert layouts == [f"NCHW{B}c -> NCHW{B}c", "NCHW -> NCHW"]


def test_depthwise_grouped_and_residual_convs():
    """Depthwise reads and writes blocks; a grouped conv reads blocks and writes NCHW; a residual
    conv reads its shortcut blocked."""
    net = Net(2 * B, 12)
    a = net.conv(net.x, 2 * B)
    d = net.conv(a, 2 * B, group=2 * B, activation="Relu6")
    grouped = net.conv(d, 2 * B, group=4)
    r = net.conv(d, 2 * B, k=1, residual=a, activation="Relu")
    report = net.compile_and_check(net.conv(r, B), grouped)
    convs = {r_["node"]: r_["layout"] for r_ in _ops(report, "Conv")}
    assert convs[d.producer.name] == f"NCHW{B}c -> NCHW{B}c"
    assert convs[r.producer.name] == f"NCHW{B}c -> NCHW{B}c"


def test_layout_off_keeps_every_value_plain():
    net = Net(B, 9)
    a = net.conv(net.op("Relu", net.conv(net.x, B)), B)
    report = net.compile_and_check(a, options=ScheduleOptions({"layout": False}))
    assert all(r["layout"].startswith("NCHW ->") and r["layout"].endswith("NCHW") for r in _ops(report, "Conv"))


@pytest.mark.parametrize("family, expect", [("direct", "direct, tile"), ("winograd", "winograd"),
                                            ("im2col", "im2col")])
def test_every_conv_family_reads_and_writes_blocks(family, expect):
    """The middle conv (forced to one family) reads a blocked input and residual and writes a
    blocked output; a channel count with a tail (B + 5) still goes through a blocked value."""
    net = Net(B, 10)
    a = net.conv(net.x, 2 * B, k=1)
    mid = net.conv(a, 2 * B, residual=a, activation="HardSwish")
    out = net.conv(net.op("Relu", mid), B + 5, k=1)
    report = net.compile_and_check(out, options=ScheduleOptions({family: True}))
    conv = next(r for r in _ops(report, "Conv") if r["node"] == mid.producer.name)
    assert expect in conv["schedule"] and conv["layout"] == f"NCHW{B}c -> NCHW{B}c"
    assert _ops(report, "LayoutTransform") == []
    if family == "direct":  # a two-vector output block (2 blocks of the stored layout per tile) is covered
        assert any(f"x{2 * B}," in r["schedule"] and r["layout"].endswith(f"NCHW{B}c") for r in _ops(report, "Conv"))


def test_measured_selection_times_blocked_kernels(tmp_path, monkeypatch):
    """--measure runs each candidate on tensors of the layouts it reads and writes."""
    monkeypatch.setenv("NNFORGE_CACHE_DIR", str(tmp_path))
    net = Net(B, 8)
    a = net.conv(net.x, B)
    report = net.compile_and_check(net.conv(net.op("Relu", a), B), options=ScheduleOptions({}, measure=True))
    assert "measured" in _ops(report, "Conv")[1]["candidates"]
    assert _ops(report, "Conv")[1]["layout"].startswith(f"NCHW{B}c")
