"""The rule table: every rule proved (z3) and tested (interpreter); Before/Expected graphs
per family, each paired with a numeric check."""
import numpy as np
import pytest

from nnforge.ir import interpret, parse_graph
from nnforge.passes.manager import random_feeds
from nnforge.passes.rewrite import RULES, get_rules, rewrite_to_fixpoint, verify_rule
from nnforge.passes.rewrite.pattern import parse_pattern
from nnforge.passes.rewrite.search import canonical_hash


def test_table_is_large_named_and_unique():
    names = [r.name for r in RULES]
    assert len(names) >= 40 and len(set(names)) == len(names)
    assert all(n == n.lower() and " " not in n and "_" not in n for n in names)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_every_rule_is_proved_and_tested(rule):
    v = verify_rule(rule)  # z3 on each example, interpreter on random inputs, non-examples rejected
    assert v.ok, v.message
    assert v.examples == len(rule.examples) >= 1


def test_pattern_syntax_round_trip():
    (t,) = parse_pattern("Transpose(Transpose(x){perm=p}){perm=[1,0]}")
    assert t.op == "Transpose" and t.attrs == (("perm", ("lit", (1, 0))),)
    roots = parse_pattern("Split(MatMul(x, w)){axis=1, split=s}#1, MatMul(x, v)")
    assert len(roots) == 2 and roots[0].index == 1


def rewrite(before: str, rules):
    g = parse_graph(before)
    new, fired = rewrite_to_fixpoint(g, get_rules(rules))
    return g, new, [name for name, _ in fired]


def same(before, after, expected: str):
    """Structure equals Expected (up to names) and numbers equal the Before graph."""
    assert canonical_hash(after) == canonical_hash(parse_graph(expected)), str(after)
    feeds = random_feeds(before, 3)
    for a, b in zip(interpret(before, feeds), interpret(after, feeds)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_identities_removed():
    before = """graph t(%x: float32[2,3]) {
  %one = const float32[3] [1.0, 1.0, 1.0]
  %zero = const float32[] [0.0]
  %a = Mul(%x, %one)
  %b = Add(%zero, %a)
  %c = Transpose(%b) {perm=[0,1]}
  %d = Reshape(%c) {shape=[2,3]}
  %e = Relu(%d)
  return %e
}"""
    g, new, fired = rewrite(before, ["mul-one", "add-zero-left", "transpose-identity", "reshape-noop"])
    assert sorted(fired) == ["add-zero-left", "mul-one", "reshape-noop", "transpose-identity"]
    same(g, new, "graph t(%x: float32[2,3]) {\n  %e = Relu(%x)\n  return %e\n}")


def test_identity_not_removed_when_it_broadcasts_or_is_not_one():
    before = """graph t(%x: float32[3]) {
  %one = const float32[2,3] [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
  %two = const float32[3] [2.0, 2.0, 2.0]
  %a = Mul(%x, %one)
  %b = Mul(%a, %two)
  return %b
}"""
    _, new, fired = rewrite(before, ["mul-one"])
    assert fired == [] and len(new.nodes) == 2


def test_transpose_pair_cancels_through_relu():
    before = """graph t(%x: float32[2,3,4]) {
  %a = Transpose(%x) {perm=[1,2,0]}
  %b = Relu(%a)
  %c = Transpose(%b) {perm=[2,0,1]}
  return %c
}"""
    g, new, fired = rewrite(before, ["relu-transpose", "transpose-transpose", "transpose-identity"])
    assert fired == ["relu-transpose", "transpose-transpose", "transpose-identity"]
    same(g, new, "graph t(%x: float32[2,3,4]) {\n  %r = Relu(%x)\n  return %r\n}")


def test_split_concat_and_concat_split_cancel():
    before = """graph t(%x: float32[2,5], %y: float32[2,1]) {
  %a, %b = Split(%x) {axis=1, split=[2,3]}
  %c = Concat(%a, %b) {axis=1}
  %d = Concat(%c, %y) {axis=1}
  %e, %f = Split(%d) {axis=1, split=[5,1]}
  %g = Add(%e, %e)
  %h = Mul(%f, %f)
  return %g, %h
}"""
    g, new, fired = rewrite(before, ["concat-of-split", "split-of-concat"])
    assert set(fired) == {"concat-of-split", "split-of-concat"}
    same(g, new, """graph t(%x: float32[2,5], %y: float32[2,1]) {
  %g = Add(%x, %x)
  %h = Mul(%y, %y)
  return %g, %h
}""")


def test_conv_batchnorm_and_bias_fold_into_one_conv():
    before = """graph t(%x: float32[1,2,4,4]) {
  %w = const float32[2,2,1,1] [0.5, -1.0, 2.0, 0.25]
  %g = const float32[2] [1.5, 0.5]
  %b = const float32[2] [0.1, -0.2]
  %m = const float32[2] [0.3, 0.0]
  %v = const float32[2] [2.0, 0.5]
  %c = const float32[2,1,1] [1.0, -3.0]
  %y = Conv(%x, %w)
  %z = BatchNormalization(%y, %g, %b, %m, %v) {epsilon=1e-5}
  %o = Add(%z, %c)
  return %o
}"""
    g, new, fired = rewrite(before, ["fold-conv-batchnorm", "fold-conv-bias-add"])
    assert fired == ["fold-conv-batchnorm", "fold-conv-bias-add"]
    assert [n.op for n in new.nodes] == ["Conv"] and len(new.nodes[0].inputs) == 3
    same(g, new, str(new).replace("<elided>", ""))  # numbers checked against the Before graph


def test_batchnorm_not_folded_into_conv_with_runtime_weights():
    before = """graph t(%x: float32[1,2,3,3], %w: float32[2,2,1,1]) {
  %g = const float32[2] [1.0, 1.0]
  %y = Conv(%x, %w)
  %z = BatchNormalization(%y, %g, %g, %g, %g)
  return %z
}"""
    _, new, fired = rewrite(before, ["fold-conv-batchnorm"])
    assert fired == [] and [n.op for n in new.nodes] == ["Conv", "BatchNormalization"]


def test_parallel_matmuls_merge_and_weights_fold():
    before = """graph t(%x: float32[2,3]) {
  %w1 = const float32[3,1] [1.0, 2.0, 3.0]
  %w2 = const float32[3,1] [-1.0, 0.5, 4.0]
  %w3 = const float32[3,1] [0.0, 1.0, -2.0]
  %q = MatMul(%x, %w1)
  %k = MatMul(%x, %w2)
  %v = MatMul(%x, %w3)
  %s = Add(%q, %k)
  %o = Mul(%s, %v)
  return %o
}"""
    g, new, fired = rewrite(before, ["merge-matmul-into-split", "merge-parallel-matmuls", "fold-constants"])
    assert fired[:2] == ["merge-parallel-matmuls", "merge-matmul-into-split"]
    assert [n.op for n in new.nodes] == ["MatMul", "Split", "Add", "Mul"]
    assert new.nodes[0].inputs[1].is_constant and new.nodes[0].inputs[1].type.shape == (3, 3)
    feeds = random_feeds(g, 1)
    np.testing.assert_allclose(interpret(new, feeds)[0], interpret(g, feeds)[0], rtol=1e-5)


def test_get_rules_rejects_unknown_names():
    from nnforge.errors import NnforgeError

    with pytest.raises(NnforgeError, match="no-such-rule"):
        get_rules(["no-such-rule"])
    assert "relu-relu" not in [r.name for r in get_rules(disable=["relu-relu"])]


def test_relu_fuses_into_the_conv_before_it():
    before = """graph t(%x: float32[1,2,4,4]) {
  %w = const float32[2,2,1,1] [0.5, -1.0, 2.0, 0.25]
  %b = const float32[2] [0.1, -0.2]
  %y = Conv(%x, %w, %b) {pads=[1,1,1,1]}
  %r = Relu(%y)
  %z = Conv(%r, %w)
  %o = Relu(%z)
  return %o
}"""
    g, new, fired = rewrite(before, ["fuse-conv-relu"])
    assert fired == ["fuse-conv-relu", "fuse-conv-relu"]
    same(g, new, """graph t(%x: float32[1,2,4,4]) {
  %w = const float32[2,2,1,1] [0.5, -1.0, 2.0, 0.25]
  %b = const float32[2] [0.1, -0.2]
  %y = Conv(%x, %w, %b) {pads=[1,1,1,1], activation="Relu"}
  %o = Conv(%y, %w) {activation="Relu"}
  return %o
}""")


def test_relu_not_fused_into_a_conv_with_other_users():
    before = """graph t(%x: float32[1,2,4,4]) {
  %w = const float32[2,2,1,1] [0.5, -1.0, 2.0, 0.25]
  %y = Conv(%x, %w)
  %r = Relu(%y)
  %o = Add(%r, %y)
  return %o, %y
}"""
    g, new, fired = rewrite(before, ["fuse-conv-relu"])
    assert fired == [] and [n.op for n in new.nodes] == ["Conv", "Relu", "Add"]
    same(g, new, before)


def test_add_after_a_fused_relu_is_not_folded_into_the_bias():
    before = """graph t(%x: float32[1,2,4,4]) {
  %w = const float32[2,2,1,1] [0.5, -1.0, 2.0, 0.25]
  %c = const float32[2,1,1] [-1.0, 3.0]
  %y = Conv(%x, %w)
  %r = Relu(%y)
  %o = Add(%r, %c)
  return %o
}"""
    g, new, fired = rewrite(before, ["fuse-conv-relu", "fold-conv-add", "fold-conv-mul"])
    assert fired == ["fuse-conv-relu"] and [n.op for n in new.nodes] == ["Conv", "Add"]
    same(g, new, """graph t(%x: float32[1,2,4,4]) {
  %w = const float32[2,2,1,1] [0.5, -1.0, 2.0, 0.25]
  %c = const float32[2,1,1] [-1.0, 3.0]
  %y = Conv(%x, %w) {activation="Relu"}
  %o = Add(%y, %c)
  return %o
}""")
