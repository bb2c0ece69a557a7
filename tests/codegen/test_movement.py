"""Data-movement kernels (codegen/movement.py) against the registry's numpy references."""
import numpy as np
import pytest

from kernel_harness import Const, check_against_reference, compile_kernel

RNG = np.random.default_rng(0)
DTYPES = ("float32", "int64", "bool", "float16")


def rand(shape, dtype):
    if dtype == "bool":
        return RNG.random(shape) > 0.5
    return (RNG.standard_normal(shape) * 10).astype(dtype)


# (op, attrs, input shapes): odd sizes, zero-size pieces, long rows (chunked vector copies),
# big enough to run in parallel, negative steps, broadcasting and repeating
COPY_CASES = [
    ("Reshape", {"shape": (6, 35)}, [(2, 3, 5, 7)]),
    ("Reshape", {"shape": (64, 3, 31)}, [(2, 96, 31)]),
    ("Concat", {"axis": 1}, [(2, 3, 5, 7), (2, 1, 5, 7), (2, 4, 5, 7)]),
    ("Concat", {"axis": 3}, [(2, 3, 5, 7), (2, 3, 5, 2)]),
    ("Concat", {"axis": 0}, [(300, 70), (1, 70)]),
    ("Concat", {"axis": 1}, [(2, 0, 3), (2, 5, 3)]),
    ("Split", {"axis": 2, "split": (1, 3, 1)}, [(2, 3, 5, 7)]),
    ("Split", {"axis": 1, "split": (200, 0, 57)}, [(40, 257)]),
    ("Slice", {"starts": (4, 1), "ends": (-1, 7), "axes": (2, 3), "steps": (-2, 3)}, [(2, 3, 5, 7)]),
    ("Slice", {"starts": (1, 0), "ends": (3, 300), "axes": (0, 1), "steps": (1, 1)}, [(4, 300)]),
    ("Slice", {"starts": (6,), "ends": (-1,), "axes": (3,), "steps": (-1,)}, [(2, 3, 5, 7)]),
    ("Slice", {"starts": (5,), "ends": (5,), "axes": (1,), "steps": (1,)}, [(2, 7)]),
    ("Expand", {"shape": (4, 2, 3, 5, 7)}, [(2, 3, 5, 7)]),
    ("Expand", {"shape": (2, 3, 5, 7)}, [(2, 1, 5, 1)]),
    ("Expand", {"shape": (64, 300)}, [(300,)]),
    ("Tile", {"repeats": (1, 2, 3, 1)}, [(2, 3, 5, 7)]),
    ("Tile", {"repeats": (3, 1)}, [(2, 1)]),
    ("Transpose", {"perm": (0, 2, 1, 3)}, [(2, 3, 5, 7)]),
    ("Transpose", {"perm": (0, 2, 3, 1)}, [(2, 3, 5, 7)]),
    ("Transpose", {"perm": (0, 2, 3, 1)}, [(1, 40, 33, 18)]),
    ("Transpose", {"perm": (3, 1, 2, 0)}, [(17, 6, 5, 35)]),
    ("Transpose", {"perm": (1, 0)}, [(70, 129)]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op,attrs,shapes", COPY_CASES, ids=lambda v: str(v) if isinstance(v, str) else None)
def test_copies(op, attrs, shapes, dtype):
    check_against_reference(op, attrs, [rand(s, dtype) for s in shapes])


def test_copies_have_no_per_element_index_arithmetic():
    """Concat along an inner axis becomes one plain strided copy per input (no select)."""
    a, b = rand((2, 3, 40), "float32"), rand((2, 3, 24), "float32")
    k = compile_kernel("Concat", {"axis": 2}, [a, b])
    text = k.kernel.func.script()
    assert "if_then_else" not in text and "Select" not in text
    assert k([a, b])[0].tobytes() == np.concatenate([a, b], 2).tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", ["int32", "int64"])
def test_gather(dtype, index_dtype):
    x = rand((3, 4, 5, 6), dtype)
    indices = RNG.integers(-4, 4, (2, 3)).astype(index_dtype)
    check_against_reference("Gather", {"axis": 1}, [x, indices])
    check_against_reference("Gather", {"axis": 3}, [x, Const(RNG.integers(-6, 6, (4,)).astype(index_dtype))])
    check_against_reference("Gather", {"axis": 0}, [x, np.array([-1], index_dtype)])
    elements = RNG.integers(-5, 5, (3, 2, 5, 4)).astype(index_dtype)
    check_against_reference("GatherElements", {"axis": 2}, [x, elements])
    check_against_reference("GatherElements", {"axis": 0}, [x, Const(RNG.integers(-3, 3, (2, 4, 5, 6)).astype(index_dtype))])


def test_gather_scalar_index():
    check_against_reference("Gather", {"axis": 0}, [rand((3, 4), "float32"), np.array(-1, "int64")])
    check_against_reference("Gather", {"axis": 0}, [rand((5,), "float32"), np.array(2, "int32")])


PADS = [(0, 1, 2, 3, 0, 2, 1, 0),  # positive, asymmetric
        (0, -1, 2, -2, 1, 2, -1, 1),  # crops mixed with pads
        (0, 0, 7, 0, 0, 0, 9, 13)]  # pads longer than the axis (numpy repeats the pattern)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad(mode, dtype):
    x = rand((3, 4, 5, 6), dtype)
    for pads in PADS:
        check_against_reference("Pad", {"pads": pads, "mode": mode, "value": 2.5}, [x])
