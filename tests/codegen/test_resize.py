"""The Resize kernel (codegen/resize.py) against the registry's numpy reference."""
import itertools

import numpy as np
import pytest

from kernel_harness import check_against_reference

RNG = np.random.default_rng(0)


def rand(shape, dtype):
    return (RNG.standard_normal(shape) * 10).astype(dtype)


COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                    "asymmetric", "tf_crop_and_resize")


def resize(x, scales, sizes=None, rtol=1e-5, **attrs):
    sizes = sizes or tuple(int(np.floor(s * d)) for s, d in zip(scales, x.shape))
    return check_against_reference("Resize", dict(attrs, scales=scales, sizes=sizes), [x], rtol=rtol)


@pytest.mark.parametrize("mode,ctm", list(itertools.product(["nearest", "linear", "cubic"], COORDINATE_MODES)))
def test_resize_modes(mode, ctm):
    x = rand((1, 2, 5, 7), "float32")
    for scales in [(1.0, 1.0, 1.7, 0.6), (1.0, 1.0, 2.0, 3.0), (1.0, 1.0, 0.2, 1.0)]:
        resize(x, scales, mode=mode, coordinate_transformation_mode=ctm)


@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
@pytest.mark.parametrize("ctm", ["half_pixel", "align_corners", "asymmetric"])
def test_resize_nearest_modes(nearest_mode, ctm):
    x = rand((2, 3, 6, 5), "float32")
    for scales in [(1.0, 1.0, 1.5, 2.5), (1.0, 1.0, 0.5, 0.7)]:
        resize(x, scales, mode="nearest", nearest_mode=nearest_mode, coordinate_transformation_mode=ctm,
               exclude_outside=1)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_resize_exclude_outside_and_coefficient(mode):
    x = rand((1, 2, 6, 9), "float32")
    resize(x, (1.0, 1.0, 1.5, 0.7), mode=mode, exclude_outside=1, cubic_coeff_a=-0.5)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_extrapolation(mode):
    """sizes larger than scale * input: tf_crop_and_resize maps the tail outside the input."""
    x = rand((1, 1, 5, 7), "float32")
    resize(x, (1.0, 1.0, 2.0, 2.0), sizes=(1, 1, 12, 15), mode=mode,
           coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=-7.0)


def test_resize_any_rank_and_axes():
    resize(rand((3, 4, 5), "float32"), (1.0, 1.5, 0.6), mode="cubic")  # rank 3, 2 axes
    resize(rand((2, 3, 2, 4, 3), "float32"), (1.0, 1.0, 2.0, 1.0, 1.4), mode="linear")
    resize(rand((2, 6), "float32"), (2.5, 1.0), mode="linear", coordinate_transformation_mode="align_corners")
    resize(rand((9,), "float32"), (0.5,), mode="cubic")


@pytest.mark.parametrize("dtype", ["float16", "float64", "uint8", "int64"])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_dtypes(dtype, mode):
    # Linear weights at scale 1.5 are sixths, so multiples of 36 give exact results: no
    # value sits on an integer rounding tie or a float16 rounding boundary. Own generator:
    # the data must not depend on which tests ran before.
    x = (np.random.default_rng(1).integers(0, 8, (1, 2, 4, 6)) * 36).astype(dtype)
    resize(x, (1.0, 1.0, 1.5, 1.5), mode=mode, rtol=None)  # float16: one ulp, accumulated in float32


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_crop_and_resize_roi(mode):
    """A region of interest per axis: crops, a flipped crop, one reaching outside the input."""
    x = rand((1, 2, 6, 7), "float32")
    resize(x, (1.0, 1.0, 0.8, 1.5), mode=mode, coordinate_transformation_mode="tf_crop_and_resize",
           roi=(0.0, 0.0, 0.1, 0.6, 1.0, 1.0, 0.9, 0.2), extrapolation_value=3.5)
    resize(x, (1.0, 1.0, 1.0, 1.3), mode=mode, coordinate_transformation_mode="tf_crop_and_resize",
           roi=(0.0, 0.0, 0.25, -0.3, 1.0, 1.0, 0.75, 1.4))
