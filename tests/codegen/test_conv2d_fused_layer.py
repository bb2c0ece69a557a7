"""FusedLayerConv kernels (bands of strips through line buffers, halo rows recomputed or
reused) against the reference (each Conv / MaxPool of the chain by its own registry
reference): odd sizes, strides, asymmetric padding, strips that do not divide the output,
bands that do not divide the strips, channel counts that are not a multiple of the SIMD
width, a trailing MaxPool, depth 2 and 3."""
import numpy as np
import pytest

from nnforge.errors import NnforgeError

from kernel_harness import Const, check_against_reference, compile_kernel

rng = np.random.default_rng(0)


def _chain(x_shape, convs, pool=None, tile_rows=2, bands=1, halo="reuse"):
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
    attrs = {"strides": strides, "pads": pads, "activations": ",".join(acts), "tile_rows": tile_rows,
             "bands": bands, "halo": halo}
    if pool:
        attrs.update(pool_kernel=pool[0], pool_strides=pool[1])
    return inputs, attrs


@pytest.mark.parametrize("halo", ["recompute", "reuse"])
@pytest.mark.parametrize("x_shape, convs, pool, tile_rows, bands", [
    # VGG-style block: 3x3 pad 1 twice, then 2x2 pool; 3 strips of 2 rows (the last one partial), 2 bands
    ((1, 3, 11, 9), [(16, 3, 1, (1, 1, 1, 1), "Relu"), (32, 3, 1, (1, 1, 1, 1), "Relu")], ((2, 2), (2, 2)), 2, 2),
    # stride 2 in the middle, no padding, odd channels (no SIMD block), strip taller than 1, one band
    ((1, 5, 13, 10), [(8, 3, 1, (1, 1, 1, 1), "Relu"), (5, 3, 2, (0, 0, 0, 0), "")], None, 3, 1),
    # three layers, asymmetric padding, 1x1 then 5x5, batch 2, one-row strips in 3 bands (2+2+1)
    ((2, 4, 9, 12), [(16, 1, 1, (0, 0, 0, 0), "Relu"), (16, 5, 1, (2, 1, 1, 2), "Relu"),
                     (24, 3, 2, (1, 0, 0, 1), "")], None, 1, 3),
    # overlapping 3x3 stride-2 pool after a strided conv; a strip as tall as the whole output
    ((1, 3, 17, 15), [(16, 3, 2, (1, 1, 1, 1), "Relu"), (16, 3, 1, (1, 1, 1, 1), "Relu")], ((3, 3), (2, 2)), 4, 2),
    # a 1x1 stride-2 conv skips rows (windows of neighbouring strips do not touch); more bands than strips
    ((1, 6, 12, 11), [(16, 3, 1, (1, 1, 1, 1), "Relu"), (32, 1, 2, (0, 0, 0, 0), "Relu"),
                      (16, 3, 1, (0, 1, 2, 0), "")], ((2, 2), (1, 1)), 2, 7),
    # wide enough for full register tiles and a tail tile; 3 bands over 11 one-row strips
    ((1, 8, 24, 37), [(32, 3, 1, (1, 1, 1, 1), "Relu"), (32, 3, 1, (1, 1, 1, 1), "Relu")], None, 2, 3),
])
def test_fused_layers_match_reference(x_shape, convs, pool, tile_rows, bands, halo):
    inputs, attrs = _chain(x_shape, convs, pool, tile_rows, bands, halo)
    check_against_reference("FusedLayerConv", attrs, inputs, rtol=1e-5)


def test_strip_height_bands_and_halo_do_not_change_the_result():
    inputs, attrs = _chain((1, 3, 10, 10), [(16, 3, 1, (1, 1, 1, 1), "Relu"), (16, 3, 1, (1, 1, 1, 1), "")])
    arrays = [i.data if isinstance(i, Const) else i for i in inputs]
    variants = [(1, 1, "reuse"), (3, 2, "reuse"), (10, 1, "reuse"), (1, 4, "recompute"), (4, 3, "recompute")]
    outs = [compile_kernel("FusedLayerConv", {**attrs, "tile_rows": r, "bands": b, "halo": h}, inputs)(arrays)[0]
            for r, b, h in variants]
    for out in outs[1:]:
        np.testing.assert_allclose(out, outs[0], rtol=1e-5, atol=1e-5)


def test_bad_attributes_are_clear_errors():
    inputs, attrs = _chain((1, 3, 8, 8), [(8, 3, 1, (1, 1, 1, 1), "Relu"), (8, 3, 1, (1, 1, 1, 1), "")])
    with pytest.raises(NnforgeError, match="needs 2 strides, 4 pads and one activation per conv"):
        check_against_reference("FusedLayerConv", {**attrs, "strides": (1, 1)}, inputs)
    with pytest.raises(NnforgeError, match="activations .* must be among"):
        check_against_reference("FusedLayerConv", {**attrs, "activations": "Relu,Tanh"}, inputs)
    with pytest.raises(NnforgeError, match="tile_rows and bands must be positive"):
        check_against_reference("FusedLayerConv", {**attrs, "tile_rows": 0}, inputs)
    with pytest.raises(NnforgeError, match="tile_rows and bands must be positive"):
        check_against_reference("FusedLayerConv", {**attrs, "bands": 0}, inputs)
    with pytest.raises(NnforgeError, match="halo must be one of"):
        check_against_reference("FusedLayerConv", {**attrs, "halo": "rolling"}, inputs)


def test_reuse_computes_each_row_once_per_band():
    """The cost (FLOPs of the rows the kernel computes): with the halo reused and one band,
    exactly the unfused convs' FLOPs; more bands add a halo per boundary; recomputing every
    strip's halo costs more still."""
    from nnforge.ir import TensorType, get_op

    inputs, attrs = _chain((1, 3, 20, 16), [(8, 3, 1, (1, 1, 1, 1), "Relu"), (8, 3, 1, (1, 1, 1, 1), "")], None, 2)
    types = [TensorType("float32", (i.data if isinstance(i, Const) else i).shape) for i in inputs]
    op = get_op("FusedLayerConv")

    def flops(**kw):
        a = op.check_attrs({**attrs, **kw})
        return op.cost(types, op.infer_types(types, a), a).flops

    conv = get_op("Conv")
    plain, x = 0, types[0]
    for w in types[1::2]:
        attrs_c = conv.check_attrs({"pads": (1, 1, 1, 1)})
        plain += conv.cost([x, w], conv.infer_types([x, w], attrs_c), attrs_c).flops
        x = conv.infer_types([x, w], attrs_c)[0]
    assert flops(bands=1, halo="reuse") == plain
    # 2 bands of 5 strips: the second band's first strip recomputes 2 rows of conv 1 (its halo)
    assert flops(bands=2, halo="reuse") == plain + 2 * (2 * 8 * 16 * 3 * 9)
    assert flops(bands=2, halo="recompute") > flops(bands=2, halo="reuse")
