"""Normalization kernels (codegen/norm.py) against the registry's numpy references."""
import numpy as np
import pytest

from kernel_harness import Const, check_against_reference, compile_kernel

RNG = np.random.default_rng(2)


def randn(shape, dtype="float32", scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


def channel_params(c, dtype):
    return [randn(c, dtype), randn(c, dtype), randn(c, dtype),
            (RNG.random(c) + 0.5).astype(dtype)]


@pytest.mark.parametrize("dtype", ("float32", "float64", "float16"))
@pytest.mark.parametrize("shape", ((2, 6, 7, 5), (3, 4), (1, 16, 9, 56)))
def test_batchnorm(dtype, shape):
    x = randn(shape, dtype, 2)
    params = channel_params(shape[1], dtype)
    kernel = compile_kernel("BatchNormalization", {"epsilon": 1e-3}, [x] + [Const(p) for p in params])
    assert "folded" in kernel.kernel.schedule
    assert all(isinstance(a, np.ndarray) for a in kernel.kernel.args[1:])  # folded at compile time
    check_against_reference("BatchNormalization", {"epsilon": 1e-3}, [x] + [Const(p) for p in params])
    check_against_reference("BatchNormalization", {"epsilon": 1e-3}, [x] + params)


@pytest.mark.parametrize("size", (1, 2, 3, 5, 7))
@pytest.mark.parametrize("beta", (0.75, 0.5, 0.6))
def test_lrn(size, beta):
    x = randn((2, 6, 5, 7), scale=3)
    check_against_reference("LRN", {"size": size, "beta": beta, "alpha": 0.01, "bias": 1.5}, [x])


@pytest.mark.parametrize("dtype", ("float64", "float16"))
def test_lrn_dtypes(dtype):
    check_against_reference("LRN", {"size": 5}, [randn((1, 9, 4, 3), dtype, 3)])


@pytest.mark.parametrize("dtype", ("float32", "float16", "float64"))
@pytest.mark.parametrize("axis", (0, 1, 3))
def test_layernorm(dtype, axis):
    x = randn((2, 6, 7, 5), dtype, 3) + np.asarray(4, dtype)
    scale = randn(x.shape[axis:], dtype)
    bias = randn((1,) * (3 - axis) + x.shape[-1:], dtype)
    check_against_reference("LayerNormalization", {"axis": axis, "epsilon": 1e-4}, [x, scale, bias])
    check_against_reference("LayerNormalization", {"axis": axis}, [x, scale[-1:]])


@pytest.mark.parametrize("op", ("Softmax", "LogSoftmax"))
@pytest.mark.parametrize("dtype", ("float32", "float16", "float64"))
def test_softmax_axes(op, dtype):
    x = randn((2, 6, 7, 5), dtype, 5)
    for axis in range(4):
        check_against_reference(op, {"axis": axis}, [x])


@pytest.mark.parametrize("op", ("Softmax", "LogSoftmax"))
def test_softmax_is_stable_for_large_logits(op):
    """Logits of +-1e4 overflow exp unless the max is subtracted first."""
    x = randn((3, 1000), scale=1e4)
    out = check_against_reference(op, {"axis": 1}, [x])[0]
    assert np.isfinite(out).all()


def test_softmax_large_rows():
    x = randn((64, 1000), scale=4)
    check_against_reference("Softmax", {"axis": 1}, [x])
    check_against_reference("Softmax", {"axis": 0}, [x])
