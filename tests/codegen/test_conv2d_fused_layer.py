"""FusedLayerConv kernels (strip by strip, halo rows recomputed) against the reference
(each Conv / MaxPool of the chain by its own registry reference): odd sizes, strides,
asymmetric padding, strips that do not divide the output, channel counts that are not a
multiple of the SIMD width, a trailing MaxPool."""
import numpy as np
import pytest

from nnforge.errors import NnforgeError

from kernel_harness import Const, check_against_reference, compile_kernel

rng = np.random.default_rng(0)


def _chain(x_shape, convs, pool=None, tile_rows=2):
    """Inputs and attributes of a FusedLayerConv: convs = [(M, k, stride, pads, activation)]."""
    x = rng.standard_normal(x_shape).astype(np.float32)
    inputs, strides, pads, acts, c = [x], [], [], [], x_shape[1]
    for m, k, s, p, act in convs:
        w = rng.standard_normal((m, c, k, k)) / np.sqrt(c * k * k)
        inputs += [Const(w.astype(np.float32)), Const(rng.standard_normal(m).astype(np.float32))]
        strides += [s, s]
        pads += list(p)
        acts.append(act)
        c = m
    attrs = {"strides": strides, "pads": pads, "activations": ",".join(acts), "tile_rows": tile_rows}
    if pool:
        attrs.update(pool_kernel=pool[0], pool_strides=pool[1])
    return inputs, attrs


@pytest.mark.parametrize("x_shape, convs, pool, tile_rows", [
    # VGG-style block: 3x3 pad 1 twice, then 2x2 pool; 3 strips of 2 rows (the last one partial)
    ((1, 3, 11, 9), [(16, 3, 1, (1, 1, 1, 1), "Relu"), (32, 3, 1, (1, 1, 1, 1), "Relu")], ((2, 2), (2, 2)), 2),
    # stride 2 in the middle, no padding, odd channels (no SIMD block), strip taller than 1
    ((1, 5, 13, 10), [(8, 3, 1, (1, 1, 1, 1), "Relu"), (5, 3, 2, (0, 0, 0, 0), "")], None, 3),
    # three layers, asymmetric padding, 1x1 then 5x5, batch 2, one-row strips
    ((2, 4, 9, 12), [(16, 1, 1, (0, 0, 0, 0), "Relu"), (16, 5, 1, (2, 1, 1, 2), "Relu"),
                     (24, 3, 2, (1, 0, 0, 1), "")], None, 1),
    # overlapping 3x3 stride-2 pool after a strided conv; a strip as tall as the whole output
    ((1, 3, 17, 15), [(16, 3, 2, (1, 1, 1, 1), "Relu"), (16, 3, 1, (1, 1, 1, 1), "Relu")], ((3, 3), (2, 2)), 4),
])
def test_fused_layers_match_reference(x_shape, convs, pool, tile_rows):
    inputs, attrs = _chain(x_shape, convs, pool, tile_rows)
    check_against_reference("FusedLayerConv", attrs, inputs, rtol=1e-5)


def test_strip_height_does_not_change_the_result():
    inputs, attrs = _chain((1, 3, 10, 10), [(16, 3, 1, (1, 1, 1, 1), "Relu"), (16, 3, 1, (1, 1, 1, 1), "")])
    arrays = [i.data if isinstance(i, Const) else i for i in inputs]
    outs = [compile_kernel("FusedLayerConv", {**attrs, "tile_rows": r}, inputs)(arrays)[0] for r in (1, 3, 10)]
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outs[0], outs[2], rtol=1e-5, atol=1e-5)


def test_bad_attributes_are_clear_errors():
    inputs, attrs = _chain((1, 3, 8, 8), [(8, 3, 1, (1, 1, 1, 1), "Relu"), (8, 3, 1, (1, 1, 1, 1), "")])
    with pytest.raises(NnforgeError, match="needs 2 strides, 4 pads and one activation per conv"):
        check_against_reference("FusedLayerConv", {**attrs, "strides": (1, 1)}, inputs)
    with pytest.raises(NnforgeError, match="activations .* must be among"):
        check_against_reference("FusedLayerConv", {**attrs, "activations": "Relu,Tanh"}, inputs)
    with pytest.raises(NnforgeError, match="tile_rows must be positive"):
        check_against_reference("FusedLayerConv", {**attrs, "tile_rows": 0}, inputs)
