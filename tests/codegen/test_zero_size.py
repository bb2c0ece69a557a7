"""The shared zero-size rule (codegen/zero_size.py), which rules.select tries before every
op's own rules: empty outputs build a kernel that computes nothing, all-empty run-time
inputs a copy of the reference's constant outputs."""
import numpy as np
import pytest

from kernel_harness import Const, check_against_reference, compile_kernel

from nnforge.errors import UnsupportedError

RNG = np.random.default_rng(0)


def f32(*shape):
    return RNG.standard_normal(shape).astype("float32")


# (op, attrs, inputs, the output is a compile-time constant)
CASES = [
    ("Relu", {}, [f32(0, 3)], False),
    ("Add", {}, [f32(2, 0, 3), f32(3)], False),  # the non-empty input broadcasts away
    ("Where", {}, [np.zeros((0, 2), bool), f32(0, 2), f32(1, 2)], False),
    ("Softmax", {"axis": 1}, [f32(0, 5)], False),
    ("LRN", {"size": 3}, [f32(0, 4, 2, 2)], False),
    ("MaxPool", {"kernel_shape": (2, 2)}, [f32(0, 3, 4, 4)], False),
    ("GlobalAveragePool", {}, [f32(2, 0, 3, 3)], False),
    ("GlobalMaxPool", {}, [f32(0, 3, 4, 3)], False),
    ("Conv", {}, [f32(0, 3, 5, 5), Const(f32(4, 3, 3, 3))], False),
    ("MatMul", {}, [f32(3, 0), f32(0, 4)], True),  # zeros
    ("MatMul", {}, [f32(2, 0, 5), Const(f32(5, 4))], False),
    ("Gemm", {"alpha": 2.0}, [f32(3, 0), Const(f32(0, 4)), Const(f32(4))], True),  # C
    ("ReduceSum", {"axes": (0,), "keepdims": 0}, [np.zeros((0, 3), "int64")], True),
    ("ReduceMean", {"axes": (1,), "keepdims": 1}, [f32(3, 0)], True),  # NaN
]


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value")  # the reference's NaN
@pytest.mark.parametrize("op, attrs, inputs, constant", CASES, ids=[c[0] for c in CASES])
def test_zero_size_nodes_take_the_shared_rule(op, attrs, inputs, constant):
    kernel = compile_kernel(op, attrs, inputs).kernel
    assert kernel.schedule.startswith("zero-size")
    assert any(isinstance(a, np.ndarray) for a in kernel.args) == constant
    check_against_reference(op, attrs, inputs)


def test_undefined_results_are_an_nnforge_error():
    """The max over an empty window has no identity in the reference: say so, naming the node."""
    with pytest.raises(UnsupportedError, match="globalmaxpool .*empty inputs"):
        compile_kernel("GlobalMaxPool", {}, [f32(2, 3, 0, 3)])


def test_nonempty_nodes_skip_it():
    kernel = compile_kernel("ReduceSum", {"axes": (1,), "keepdims": 1}, [f32(3, 2)]).kernel
    assert not kernel.schedule.startswith("zero-size")
