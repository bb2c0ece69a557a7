"""Reduction kernels (codegen/reduce.py) against the registry's numpy references."""
import numpy as np
import pytest

from kernel_harness import check_against_reference, compile_kernel

RNG = np.random.default_rng(1)
OPS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd")
AXES = ((0,), (1,), (3,), (1, 2), (0, 3), (2, 3), (0, 1, 2, 3))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("keepdims", (0, 1))
def test_axes_float32(op, keepdims):
    x = RNG.standard_normal((2, 3, 7, 5)).astype("float32")
    if op == "ReduceProd":
        x = (np.abs(x) + 0.5).astype("float32")  # keep the product in range
    for axes in AXES:
        check_against_reference(op, {"axes": axes, "keepdims": keepdims}, [x])


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", ("float16", "float64", "int32", "int64", "uint8"))
def test_dtypes(op, dtype):
    x = RNG.integers(1, 5 if op == "ReduceProd" else 100, (3, 4, 6)).astype(dtype)
    if dtype.startswith("float"):
        x = (x * 0.25).astype(dtype)
    for axes in ((2,), (0, 2)):
        check_against_reference(op, {"axes": axes, "keepdims": 1}, [x])


def test_integer_mean_truncates():
    x = np.array([[1, 2], [-3, -4], [5, 5]], "int32")
    check_against_reference("ReduceMean", {"axes": (1,), "keepdims": 0}, [x])


@pytest.mark.parametrize("op", ("ReduceMax", "ReduceMin"))
def test_max_min_propagate_nan_and_inf(op):
    x = RNG.standard_normal((4, 9)).astype("float32")
    x[0, 3], x[1, 0], x[2, 8] = np.nan, -np.inf, np.inf
    x[3, :] = -np.inf if op == "ReduceMax" else np.inf  # a row of only the identity's sign
    check_against_reference(op, {"axes": (1,), "keepdims": 1}, [x])
    check_against_reference(op, {"axes": (0,), "keepdims": 1}, [x])


@pytest.mark.parametrize("op", ("ReduceMax", "ReduceMin"))
def test_bool_max_is_any_min_is_all(op):
    x = RNG.random((3, 5, 17)) < 0.2
    x[1] = True  # a slice where all() holds
    for axes in ((0,), (2,), (1, 2), (0, 1, 2)):
        check_against_reference(op, {"axes": axes, "keepdims": 1}, [x])


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value")  # the reference's NaN
@pytest.mark.parametrize("op, dtype", [(op, d) for op in OPS for d in ("float32", "int32")
                                       if not (op == "ReduceMean" and d == "int32")] +
                         [("ReduceMax", "bool"), ("ReduceMin", "bool")])
def test_empty_inputs(op, dtype):
    """Reducing a zero-size axis gives the identity (NaN for Mean); a zero-size kept axis
    gives a zero-size output. Both take the shared zero-size rule."""
    x = np.zeros((2, 0, 4), dtype)
    for axes, keepdims in (((1,), 1), ((1,), 0), ((0, 1, 2), 0), ((2,), 1)):
        kernel = compile_kernel(op, {"axes": axes, "keepdims": keepdims}, [x]).kernel
        assert kernel.schedule.startswith("zero-size")
        check_against_reference(op, {"axes": axes, "keepdims": keepdims}, [x])


def test_rank0_input():
    check_against_reference("ReduceSum", {"axes": (), "keepdims": 1}, [np.array(2.5, "float32")])


@pytest.mark.parametrize("axes", ((1,), (2, 3), (0, 2, 3)))
def test_large_non_last_axis_reductions_are_parallel(axes):
    """Reducing channels of a 1x64x56x56 map: kept inner axes vectorized, split among cores."""
    x = RNG.standard_normal((1, 64, 56, 56)).astype("float32")
    kernel = compile_kernel("ReduceSum", {"axes": axes, "keepdims": 1}, [x]).kernel
    assert "T.parallel" in kernel.func.script()
    check_against_reference("ReduceSum", {"axes": axes, "keepdims": 1}, [x], rtol=1e-5)
