"""FusedElementwise kernels against the registry reference (which applies each step's own
reference in turn): broadcasting, odd sizes, constants, every op the fusion pass may fuse."""
import numpy as np
import pytest

from nnforge.codegen.elementwise import ELEMENTWISE, VARIADIC
from nnforge.errors import NnforgeError
from nnforge.passes.fuse.elementwise import FUSABLE

from kernel_harness import Const, check_against_reference

rng = np.random.default_rng(0)


def _f32(*shape, low=-3.0, high=3.0):
    return rng.uniform(low, high, shape).astype(np.float32)


def test_every_fusable_op_has_a_fused_lowering():
    assert FUSABLE - {"FusedElementwise"} <= set(ELEMENTWISE) | set(VARIADIC)


@pytest.mark.parametrize("expr, shapes", [
    ("Relu(Add($0,$1))", [(1, 7, 5, 3), (7, 1, 1)]),  # residual-style add + relu, broadcast bias
    ("Sub(Mul(Clip{min=0.0,max=6.0}(Relu($0)),$1),Sigmoid($1))", [(3, 13), (3, 13)]),
    ("HardSwish(LeakyRelu{alpha=0.1}(Div($0,Max(Abs($1),$2,$0))))", [(2, 9, 11), (9, 11), (1,)]),
    ("Tanh(Mean(Exp(Neg($0)),Erf($1),HardSigmoid{alpha=0.2,beta=0.5}($0)))", [(5, 17), (17,)]),
    ("PRelu(Sum(Floor($0),Ceil($1),Reciprocal(Sqrt($2))),$3)", [(4, 6, 3), (6, 3), (3,), (6, 1)]),
    ("Min(Log(Add(Pow($0,$1),$2)),Clip{min=-1.5,max=inf}($0))", [(31,), (31,), (1,)]),
])
def test_fused_expression_matches_reference(expr, shapes):
    arrays = [_f32(*s, low=0.5, high=3.0) if "Log" in expr or "Sqrt" in expr else _f32(*s) for s in shapes]
    check_against_reference("FusedElementwise", {"expr": expr}, arrays, rtol=2e-5)


def test_constant_inputs():
    x, bias = _f32(2, 8, 3, 3), _f32(8, 1, 1)
    check_against_reference("FusedElementwise", {"expr": "Relu(Mul(Add($0,$1),$1))"}, [x, Const(bias)])


def test_bad_expression_is_a_clear_error():
    with pytest.raises(NnforgeError, match=r"expected \)"):
        check_against_reference("FusedElementwise", {"expr": "Relu($0"}, [_f32(3)])
    with pytest.raises(NnforgeError, match=r"reads \$2 but has 1 inputs"):
        check_against_reference("FusedElementwise", {"expr": "Relu($2)"}, [_f32(3)])
    with pytest.raises(NnforgeError, match="unknown IR op 'Bogus'"):
        check_against_reference("FusedElementwise", {"expr": "Bogus($0)"}, [_f32(3)])
