"""A proved rule made to miscompile at run time, and a graph it fires on: what translation
validation must catch (used by the TASO search and e-graph tests)."""
import numpy as np

from nnforge.ir import parse_graph
from nnforge.passes.rewrite import checked, get_rules

CONV_BN_RELU = """graph t(%x: float32[1,2,3,3]) {
  %w = const float32[2,2,1,1] [0.5, -1.0, 2.0, 0.25]
  %g = const float32[2] [1.5, 0.5]
  %y = Conv(%x, %w)
  %z = BatchNormalization(%y, %g, %g, %g, %g) {epsilon=1e-5}
  %r = Relu(%z)
  return %r
}"""


def broken_batchnorm_fold(monkeypatch):
    """fold-conv-batchnorm, proved, then patched to add 1 to the folded bias; and its graph."""
    (fold,) = checked(get_rules(["fold-conv-batchnorm"]))
    honest = fold.let
    monkeypatch.setattr(fold, "let", lambda m: {**honest(m), "b2": honest(m)["b2"] + np.float32(1)})
    return fold, parse_graph(CONV_BN_RELU)
