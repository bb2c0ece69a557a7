"""Enlarging a 1x1 conv beside a 3x3 sibling (kept only when the merge pays), batching ops that
share a weight, and the e-graph's "rules fired" (every application the extracted graph rests on)."""
import collections

import numpy as np
import pytest

from nnforge.frontend.onnx import import_model
from nnforge.ir import interpret, parse_graph
from nnforge.passes.manager import random_feeds
from nnforge.passes.rewrite import get_rules, optimize_graph, rewrite_to_fixpoint, verify_rule
from nnforge.passes.rewrite.engine import Rule
from nnforge.passes.rewrite.search import canonical_hash

# a SqueezeNet fire module's expand: a 1x1 and a 3x3 conv of the same input, concatenated
FIRE = """graph t(%x: float32[1,{c},{hw},{hw}]) {{
  %w1 = const float32[{e},{c},1,1] <elided>
  %b1 = const float32[{e}] <elided>
  %w3 = const float32[{e},{c},3,3] <elided>
  %b3 = const float32[{e}] <elided>
  %a = Conv(%x, %w1, %b1)
  %ar = Relu(%a)
  %b = Conv(%x, %w3, %b3) {{pads=[1,1,1,1]}}
  %br = Relu(%b)
  %y = Concat(%ar, %br) {{axis=1}}
  return %y
}}"""


def fire(c, e, hw):
    rng = np.random.default_rng(0)
    shapes = {"w1": (e, c, 1, 1), "b1": (e,), "w3": (e, c, 3, 3), "b3": (e,)}
    return parse_graph(FIRE.format(c=c, e=e, hw=hw),
                       constants={k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()})


def assert_same_numbers(before, after):
    feeds = random_feeds(before, 3)
    for want, got in zip(interpret(before, feeds), interpret(after, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(want))))


@pytest.mark.parametrize("engine", ["egraph", "taso"])
def test_small_fire_module_becomes_one_3x3_conv(engine):
    g = fire(c=4, e=2, hw=3)  # tiny: per-node overhead dominates, so one conv is cheaper
    out, report = optimize_graph(g, engine=engine, time_limit=10)
    convs = [n for n in out.nodes if n.op == "Conv"]
    assert len(convs) == 1 and convs[0].inputs[1].type.shape == (4, 4, 3, 3)
    assert "Concat" not in [n.op for n in out.nodes]
    assert {"enlarge-conv-1x1-to-3x3", "concat-parallel-biased-convs"} <= set(report.fired)
    assert report.cost_after < report.cost_before
    assert_same_numbers(g, out)


def test_large_fire_module_keeps_its_1x1_conv():
    g = fire(c=16, e=64, hw=28)  # 9x the 1x1's FLOPs cost more than the concat saves
    out, report = optimize_graph(g, engine="egraph", time_limit=10)
    kernels = sorted(n.inputs[1].type.shape[2:] for n in out.nodes if n.op == "Conv")
    assert kernels == [(1, 1), (3, 3)] and "enlarge-conv-1x1-to-3x3" not in report.fired
    assert_same_numbers(g, out)


def test_enlarge_with_the_weight_in_the_wrong_tap_is_refused():
    (good,) = get_rules(["enlarge-conv-1x1-to-3x3"])

    def corner(m):  # the 1x1 weight at tap (0, 0) instead of the centre
        out = good.let(m)
        w3 = np.zeros_like(out["w3"])
        w3[:, :, :1, :1] = m["w"].data
        return {**out, "w3": w3}

    bad = Rule(good.name, good.lhs, good.rhs, good.when, corner, good.examples)
    v = verify_rule(bad)
    assert not v.ok and "counterexample" in v.message and v.counterexample


def test_matmuls_sharing_a_weight_batch_into_one():
    before = """graph t(%x1: float32[2,3], %x2: float32[4,3]) {
  %w = const float32[3,2] [1.0, 2.0, -1.0, 0.5, 3.0, -2.0]
  %a = MatMul(%x1, %w)
  %b = MatMul(%x2, %w)
  %c = Relu(%a)
  %d = Neg(%b)
  return %c, %d
}"""
    g = parse_graph(before)
    new, fired = rewrite_to_fixpoint(g, get_rules(["batch-matmuls-sharing-weight"]))
    assert [name for name, _ in fired] == ["batch-matmuls-sharing-weight"]
    expected = parse_graph("""graph t(%x1: float32[2,3], %x2: float32[4,3]) {
  %w = const float32[3,2] [1.0, 2.0, -1.0, 0.5, 3.0, -2.0]
  %x = Concat(%x1, %x2) {axis=0}
  %m = MatMul(%x, %w)
  %a, %b = Split(%m) {axis=0, split=[2,4]}
  %c = Relu(%a)
  %d = Neg(%b)
  return %c, %d
}""")
    assert canonical_hash(new) == canonical_hash(expected), str(new)
    assert_same_numbers(g, new)


def test_convs_sharing_a_weight_batch_along_n_but_not_with_other_shapes():
    text = """graph t(%x1: float32[1,2,4,4], %x2: float32[1,2,{hw},{hw}]) {{
  %w = const float32[3,2,1,1] [1.0, 2.0, -1.0, 0.5, 3.0, -2.0]
  %b = const float32[3] [0.1, 0.2, 0.3]
  %a = Conv(%x1, %w, %b)
  %c = Conv(%x2, %w, %b)
  return %a, %c
}}"""
    rule = get_rules(["batch-convs-sharing-weight"])
    g = parse_graph(text.format(hw=4))
    new, fired = rewrite_to_fixpoint(g, rule)
    assert len(fired) == 1 and [n.op for n in new.nodes] == ["Concat", "Conv", "Split"]
    assert new.nodes[1].inputs[0].type.shape == (2, 2, 4, 4)
    assert_same_numbers(g, new)
    _, fired = rewrite_to_fixpoint(parse_graph(text.format(hw=5)), rule)
    assert fired == []


def test_egraph_lists_every_rule_behind_the_extracted_graph_like_taso():
    from nnforge.models.builders import resnet

    g = import_model(resnet(depth=18, num_classes=10, image=16, width=4))
    family = lambda fired: collections.Counter(  # noqa: E731  (residual fusions: -left or not)
        "fuse-residual" if "residual" in r else r for r in fired)
    _, taso = optimize_graph(g, engine="taso", max_pops=60, time_limit=20)
    _, egraph = optimize_graph(g, engine="egraph", time_limit=20)
    bns = sum(n.op == "BatchNormalization" for n in g.nodes)
    # every conv's fold survives under a later fusion: listed once per application, as TASO does
    assert family(egraph.fired)["fold-conv-batchnorm"] == bns == 20
    assert family(egraph.fired) == family(taso.fired)
    assert str(egraph).count("fold-conv-batchnorm x20") == 1


def test_egraph_lists_rules_that_made_no_new_node():
    g = parse_graph("""graph t(%x: float32[2,3]) {
  %one = const float32[3] [1.0, 1.0, 1.0]
  %a = Mul(%x, %one)
  %b = Relu(%a)
  %c = Relu(%b)
  return %c
}""")
    out, report = optimize_graph(g, ["mul-one", "relu-relu"], engine="egraph")
    _, taso = optimize_graph(g, ["mul-one", "relu-relu"], engine="taso")
    assert [n.op for n in out.nodes] == ["Relu"] and out.nodes[0].inputs[0].name == "x"
    assert sorted(report.fired) == sorted(taso.fired) == ["mul-one", "relu-relu"]
    assert_same_numbers(g, out)
