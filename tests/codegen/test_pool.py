"""Pooling kernels (codegen/pool.py) against the registry's numpy references."""
import numpy as np
import pytest

from kernel_harness import check_against_reference

RNG = np.random.default_rng(0)

# odd sizes, asymmetric pads, ceil_mode overhang, dilations, stride > kernel, no padding
WINDOWS = [
    dict(kernel_shape=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1)),
    dict(kernel_shape=(3, 2), strides=(2, 3), pads=(1, 0, 2, 1), ceil_mode=1),
    dict(kernel_shape=(2, 3), strides=(1, 2), pads=(0, 2, 1, 0), dilations=(2, 1)),
    dict(kernel_shape=(3, 3), strides=(3, 3), ceil_mode=1),
    dict(kernel_shape=(2, 2), strides=(2, 2)),
    dict(kernel_shape=(3, 3), pads=(2, 2, 2, 2), dilations=(2, 3), ceil_mode=1),
    dict(kernel_shape=(1, 1), strides=(4, 3)),
]


def randn(shape, dtype):
    return (RNG.standard_normal(shape) * 10).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
@pytest.mark.parametrize("window", range(len(WINDOWS)))
def test_max_pool(window, dtype):
    check_against_reference("MaxPool", WINDOWS[window], [randn((2, 3, 11, 9), dtype)])


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("window", range(len(WINDOWS)))
def test_average_pool(window, count_include_pad, dtype):
    attrs = dict(WINDOWS[window], count_include_pad=count_include_pad)
    check_against_reference("AveragePool", attrs, [randn((2, 3, 11, 9), dtype)])


def test_pools_big_enough_to_run_in_parallel():
    x = randn((1, 64, 112, 112), "float32")
    check_against_reference("MaxPool", WINDOWS[0], [x])
    check_against_reference("AveragePool", dict(WINDOWS[1], count_include_pad=1), [x])


# an output row of one element leaves the schedule no ow loop (and one tap no tap loops)
UNIT_ROWS = [
    ((1, 1, 2, 2), dict(kernel_shape=(1, 1), strides=(2, 2), ceil_mode=1)),  # ONNX ..._reduce_by_one
    ((2, 3, 4, 2), dict(kernel_shape=(2, 2), strides=(2, 2))),
    ((1, 2, 5, 3), dict(kernel_shape=(3, 3), pads=(1, 0, 1, 0))),
]


@pytest.mark.parametrize("shape, window", UNIT_ROWS)
def test_pools_with_one_column_output(shape, window):
    x = randn(shape, "float32")
    check_against_reference("MaxPool", window, [x])
    check_against_reference("AveragePool", window, [x])


@pytest.mark.parametrize("shape", [(2, 3, 11, 9), (2, 5, 7), (1, 2, 3, 4, 5), (1, 256, 7, 7)])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_global_pools(shape, dtype):
    x = randn(shape, dtype)
    check_against_reference("GlobalMaxPool", {}, [x])
    check_against_reference("GlobalAveragePool", {}, [x])
