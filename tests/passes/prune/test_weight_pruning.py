"""Magnitude and block pruning (passes/prune/weights.py) and the spec (passes/prune/spec.py)."""
import numpy as np
import pytest

from nnforge.driver import import_graph
from nnforge.errors import NnforgeError
from nnforge.ir import Graph, TensorType, interpret, verify
from nnforge.passes.manager import random_feeds
from nnforge.passes.prune import PruneSpec, parse_prune_spec, prune
from nnforge.passes.prune.weights import prune_blocks, weight_view

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("block", [(1, 1), (1, 8), (4, 4), (16, 1)])
def test_prune_blocks_zeroes_the_weakest_blocks(block):
    w = RNG.standard_normal((64, 32)).astype(np.float32)
    out = prune_blocks(w, block, 0.75)
    br, bc = block
    blocks = lambda a: np.abs(a).reshape(64 // br, br, 32 // bc, bc).sum(axis=(1, 3))  # noqa: E731
    zero = blocks(out) == 0
    assert zero.mean() == 0.75
    assert blocks(w)[zero].max() <= blocks(w)[~zero].min()  # only the smallest L1 norms go
    np.testing.assert_array_equal(out[out != 0], w[out != 0])  # survivors untouched


def test_every_layer_is_pruned_in_its_out_by_in_orientation():
    g = Graph("mlp")
    x = g.add_input("x", TensorType("float32", (2, 32)))
    w1 = g.constant(RNG.standard_normal((32, 64)).astype(np.float32))  # Gemm without transB: B is [in, out]
    w2 = g.constant(RNG.standard_normal((16, 64)).astype(np.float32))  # transB: B is [out, in]
    y = g.add_node("Relu", [g.add_node("Gemm", [x, w1])[0]])[0]
    g.set_outputs([g.add_node("Gemm", [y, w2], {"transB": 1})[0]])
    pruned = prune(g, "block:16x1:0.5")
    verify(pruned)
    for node in pruned.nodes:
        if node.op == "Gemm":
            m = weight_view(node).to_matrix(node.inputs[1].data)
            row_blocks = np.abs(m).reshape(m.shape[0] // 16, 16, m.shape[1]).sum(1)
            assert (row_blocks == 0).mean() == 0.5
            assert np.array_equal(m != 0, np.repeat(row_blocks != 0, 16, axis=0))
    feeds = random_feeds(g)
    (got,) = interpret(pruned, feeds)
    m1 = weight_view(pruned.nodes[0]).to_matrix(pruned.nodes[0].inputs[1].data)
    m2 = weight_view(pruned.nodes[2]).to_matrix(pruned.nodes[2].inputs[1].data)
    np.testing.assert_allclose(got, np.maximum(feeds["x"] @ m1.T, 0) @ m2.T, rtol=1e-5, atol=1e-5)


def test_magnitude_on_a_resnet(small_resnet):
    g = import_graph(small_resnet)
    pruned = prune(g, "magnitude:0.8")
    verify(pruned)
    for before, after in zip(g.nodes, pruned.nodes):
        if weight_view(before) is not None:
            w, p = before.inputs[1].data, after.inputs[1].data
            assert p.shape == w.shape and abs((p == 0).mean() - 0.8) < 0.01
            kept = np.abs(w[p != 0])
            assert kept.min() >= np.abs(w[p == 0]).max()
    feeds = random_feeds(g)
    assert interpret(pruned, feeds)[0].shape == interpret(g, feeds)[0].shape


def test_blocks_that_do_not_tile_leave_the_weight_dense():
    g = Graph("odd")
    x = g.add_input("x", TensorType("float32", (1, 10)))
    w = RNG.standard_normal((10, 6)).astype(np.float32)
    w2 = RNG.standard_normal((8, 6)).astype(np.float32)
    y = g.add_node("MatMul", [x, g.constant(w)])[0]
    g.set_outputs([g.add_node("Gemm", [y, g.constant(w2)], {"transB": 1})[0]])
    pruned = prune(g, "block:4x2:0.5")
    np.testing.assert_array_equal(pruned.nodes[0].inputs[1].data, w)  # W[out, in] is 6x10: not tiled
    assert (pruned.nodes[1].inputs[1].data == 0).mean() == 0.5
    with pytest.raises(NnforgeError, match="4x4 blocks tile no weight"):
        prune(g, "block:4x4:0.9")


@pytest.mark.parametrize("text, spec", [
    ("magnitude:0.8", PruneSpec("magnitude", 0.8)),
    ("block:4x4:0.9", PruneSpec("block", 0.9, (4, 4))),
    ("channel:slimming:0.5", PruneSpec("channel", 0.5, criterion="slimming")),
])
def test_spec_round_trip(text, spec):
    assert parse_prune_spec(text) == spec
    assert str(spec) == text


@pytest.mark.parametrize("text, message", [
    ("block:4:0.9", "ROWSxCOLS"),
    ("block:4x4:1.5", "[0, 1)"),
    ("channel:random:0.5", "criterion"),
    ("sparse:0.5", "magnitude:RATIO"),
])
def test_bad_spec_names_the_expected_form(text, message):
    with pytest.raises(NnforgeError, match=message.replace("[", r"\[").replace(")", r"\)")):
        parse_prune_spec(text)
