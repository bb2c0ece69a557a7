"""Channel pruning (passes/prune/channels.py, channel_removal.py).

The semantic check: removing a channel must compute exactly what the original graph computes
when that channel's filters, bias and BatchNorm gamma/beta are zero (the channel is then 0
everywhere it flows, through residual adds and concats too). A residual add pruned
inconsistently, a consumer weight sliced wrongly or a missed per-channel constant all
make the two differ.
"""
import numpy as np
import pytest

from nnforge.driver import import_graph
from nnforge.errors import NnforgeError
from nnforge.ir import Graph, TensorType, interpret, verify
from nnforge.passes import get_pass
from nnforge.passes.manager import random_feeds
from nnforge.passes.prune import plan_channels, prune, remove_channels

RNG = np.random.default_rng(0)


def masked(graph, plan):
    """`graph` with every channel `plan` drops zeroed at its convs and the BatchNorms after them."""
    g = graph.copy()
    users = g.users()
    for node in list(g.nodes):
        keep = plan.conv_keep.get(node.name)
        if keep is None:
            continue
        drop = np.setdiff1d(np.arange(node.outputs[0].type.shape[1]), keep)
        targets = [(node, (1, 2))] + [(u, (1, 2)) for u in users.get(node.outputs[0].name, [])
                                      if u.op == "BatchNormalization"]
        for n, indices in targets:
            for i in indices:
                if i < len(n.inputs):
                    data = n.inputs[i].data.copy()
                    data[drop] = 0
                    g.replace_all_uses(n.inputs[i], g.constant(data, n.inputs[i].name))
    return g


def assert_removal_exact(graph, plan):
    pruned = remove_channels(graph, plan)
    verify(pruned)
    feeds = random_feeds(graph, seed=3)
    for want, got in zip(interpret(masked(graph, plan), feeds), interpret(pruned, feeds)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    return pruned


def conv_channels(graph) -> dict:
    """Output value name -> channels, per Conv."""
    return {n.outputs[0].name: n.outputs[0].type.shape[1] for n in graph.nodes if n.op == "Conv"}


def conv_keep(graph, plan, output: str):
    """The plan's kept channels for the conv producing value `output`."""
    return plan.conv_keep[next(n.name for n in graph.nodes if n.outputs[0].name == output)]


def _weight(g, shape):
    return g.constant((RNG.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32))


def _bn(g, x, c):
    params = [RNG.uniform(0.2, 1.0, c), RNG.normal(0, 0.1, c), RNG.normal(0, 0.1, c), RNG.uniform(0.5, 1.5, c)]
    return g.add_node("BatchNormalization", [x] + [g.constant(p.astype(np.float32)) for p in params])[0]


def branchy_graph():
    """Concat of two conv branches -> depthwise conv -> per-channel Mul -> conv, a residual Add
    with a second conv of the input, global pool, Reshape and Gemm."""
    g = Graph("branchy")
    x = g.add_input("x", TensorType("float32", (1, 8, 6, 6)))
    a = g.add_node("Relu", [_bn(g, g.add_node("Conv", [x, _weight(g, (16, 8, 3, 3))], {"pads": (1, 1, 1, 1)},
                                              name="conv_a")[0], 16)])[0]
    b = g.add_node("Conv", [x, _weight(g, (8, 8, 1, 1)), g.constant(RNG.standard_normal(8).astype(np.float32))],
                   name="conv_b")[0]
    cat = g.add_node("Concat", [a, b], {"axis": 1})[0]
    dw = g.add_node("Conv", [cat, _weight(g, (24, 1, 3, 3))], {"pads": (1, 1, 1, 1), "group": 24}, name="dw")[0]
    scaled = g.add_node("Mul", [dw, g.constant(RNG.uniform(0.5, 2, (1, 24, 1, 1)).astype(np.float32))])[0]
    c = _bn(g, g.add_node("Conv", [scaled, _weight(g, (16, 24, 1, 1))], name="conv_c")[0], 16)
    d = _bn(g, g.add_node("Conv", [x, _weight(g, (16, 8, 1, 1))], name="conv_d")[0], 16)
    y = g.add_node("Relu", [g.add_node("Add", [c, d])[0]])[0]
    pooled = g.add_node("Reshape", [g.add_node("GlobalAveragePool", [y])[0]], {"shape": (1, 16)})[0]
    out = g.add_node("Gemm", [pooled, _weight(g, (5, 16))], {"transB": 1})[0]
    g.set_outputs([out])
    return g


@pytest.mark.parametrize("criterion", ["l1", "slimming"])
def test_residual_concat_depthwise_graph(criterion):
    g = branchy_graph()
    plan = plan_channels(g, criterion, 0.5)
    pruned = assert_removal_exact(g, plan)
    channels = conv_channels(pruned)
    # the residual pair shares one choice; conv_b has no BatchNorm, so slimming keeps it whole
    assert channels["conv_c"] == channels["conv_d"] < 16
    assert np.array_equal(conv_keep(g, plan, "conv_c"), conv_keep(g, plan, "conv_d"))
    assert channels["conv_a"] < 16
    assert channels["conv_b"] == (4 if criterion == "l1" else 8)
    assert channels["dw"] == channels["conv_a"] + channels["conv_b"]


def test_l1_keeps_the_largest_filters():
    g = branchy_graph()
    plan = plan_channels(g, "l1", 0.25)
    w = next(n for n in g.nodes if n.outputs[0].name == "conv_a").inputs[1].data
    norms = np.abs(w).reshape(16, -1).sum(1)
    assert set(conv_keep(g, plan, "conv_a")) == set(np.argsort(norms)[4:])


def test_slimming_ranks_gammas_globally(small_resnet):
    g = import_graph(small_resnet)
    plan = plan_channels(g, "slimming", 0.5)
    users = g.users()
    kept, dropped = [], []
    for root, convs in plan.prunable.items():
        gamma = np.mean([np.abs(users[c.outputs[0].name][0].inputs[1].data) for c in convs], axis=0)
        keep = plan.keep.get(root, np.arange(len(gamma)))
        kept += list(gamma[keep])
        dropped += list(np.delete(gamma, keep))
    assert len(dropped) == round(0.5 * (len(kept) + len(dropped)))
    assert max(dropped) <= min(kept)  # one global threshold, not a per-layer ratio
    assert_removal_exact(g, plan)


def test_resnet_half_channels(small_resnet):
    g = import_graph(small_resnet)
    plan = plan_channels(g, "l1", 0.5)
    pruned = assert_removal_exact(g, plan)
    before, after = conv_channels(g), conv_channels(pruned)
    assert all(after[name] == before[name] // 2 for name in before)  # every conv, residual chains included
    w_before = sum(v.type.numel for v in g.constants)
    assert sum(v.type.numel for v in pruned.constants) < 0.35 * w_before


def test_fused_residual_input_shares_the_channels():
    """Conv(x, w, b, r) (the residual Add fused by simplify) prunes r's channels with its own."""
    g = Graph("fused")
    x = g.add_input("x", TensorType("float32", (1, 4, 5, 5)))
    a = g.add_node("Conv", [x, _weight(g, (8, 4, 1, 1)), _weight(g, (8,))], name="conv_a")[0]
    y = g.add_node("Conv", [g.add_node("Relu", [a])[0], _weight(g, (8, 8, 3, 3)), _weight(g, (8,)), a],
                   {"pads": (1, 1, 1, 1), "activation": "Relu"}, name="conv_b")[0]
    pooled = g.add_node("Reshape", [g.add_node("GlobalAveragePool", [y])[0]], {"shape": (1, 8)})[0]
    g.set_outputs([g.add_node("Gemm", [pooled, _weight(g, (3, 8))], {"transB": 1})[0]])
    plan = plan_channels(g, "l1", 0.5)
    pruned = assert_removal_exact(g, plan)
    assert conv_channels(pruned) == {"conv_a": 4, "conv_b": 4}
    assert np.array_equal(conv_keep(g, plan, "conv_a"), conv_keep(g, plan, "conv_b"))


def test_channels_reaching_an_output_are_kept():
    g = Graph("out")
    x = g.add_input("x", TensorType("float32", (1, 4, 5, 5)))
    y = g.add_node("Conv", [x, _weight(g, (8, 4, 1, 1))], name="conv")[0]
    g.set_outputs([g.add_node("Relu", [y])[0]])
    with pytest.raises(NnforgeError, match="no conv output channels can be removed"):
        prune(g, "channel:l1:0.5")


def test_prune_pass_by_name():
    g = branchy_graph()
    p = get_pass("prune:channel:l1:0.5")
    assert p.name == "prune:channel:l1:0.5"
    out = p(g)
    assert conv_channels(out)["conv_a"] == 8
    assert conv_channels(g)["conv_a"] == 16  # the input graph is not modified


def test_pruned_graph_compiles_and_matches_the_interpreter():
    """The odd channel counts pruning leaves (12-channel depthwise conv, 8-channel residual) compile."""
    import nnforge
    from nnforge.passes import DEFAULT_PIPELINE, run_pipeline

    g = branchy_graph()
    passes = ["prune:channel:l1:0.5", *DEFAULT_PIPELINE]
    feeds = random_feeds(g, seed=4)
    (want,) = interpret(run_pipeline(g, passes), feeds)
    (got,) = nnforge.compile(g, passes=passes, cache=False).run(feeds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
