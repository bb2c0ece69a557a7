"""VTA conv2d/dense lowering: bit-exact on the simulator against the numpy int8 reference."""
from dataclasses import replace

import numpy as np
import pytest

from nnforge.codegen.vta import (conv2d_int8_reference, dense_int8_reference, lower_conv2d, lower_dense,
                                 pack_activations, pack_weights, plan_conv2d, unpack_activations)
from nnforge.errors import UnsupportedError
from nnforge.runtime.vta import Gemm, Load, MemType, VTADeadlockError


def _data(seed, n, c, h, w, o, k):
    rng = np.random.default_rng(seed)
    return (rng.integers(-128, 128, (n, c, h, w), dtype=np.int8), rng.integers(-128, 128, (o, c, k, k), dtype=np.int8),
            rng.integers(-20000, 20000, o).astype(np.int32))


def test_reference_matches_a_direct_loop():
    x, w, b = _data(0, 1, 3, 5, 6, 2, 3)
    y = conv2d_int8_reference(x, w, b, 8, stride=2, padding=1)
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    for o in range(2):
        for i in range(y.shape[2]):
            for j in range(y.shape[3]):
                acc = int((xp[0, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3] * w[o]).sum()) + int(b[o])
                assert y[0, o, i, j] == max(-128, min(127, (acc + 128) >> 8))  # round half up, clip
    assert conv2d_int8_reference(x, w, b, 8, relu=True, stride=2, padding=1).min() >= 0


CASES = [  # n, c, h, w, o, k, stride, pad, shift, relu, max_tile_rows
    (1, 16, 6, 6, 16, 1, 1, 0, 6, False, None),
    (1, 20, 9, 9, 24, 3, 1, 1, 9, False, None),  # channels not multiples of 16
    (1, 3, 11, 10, 5, 3, 2, 1, 7, True, None),  # stride 2, ReLU, 3 input channels
    (2, 17, 8, 7, 33, 3, 2, 2, 10, False, 2),  # batch 2, pad 2, forced tiling into 2-row bands
    (1, 32, 7, 9, 16, 1, 2, 0, 0, True, 1),  # shift 0, 1x1 stride 2, one row per tile
    (1, 64, 30, 30, 32, 3, 1, 1, 11, True, None),  # tiling forced by the buffer sizes
]


@pytest.mark.parametrize("n, c, h, w, o, k, stride, pad, shift, relu, rows", CASES)
def test_conv2d_bit_exact_on_simulator(n, c, h, w, o, k, stride, pad, shift, relu, rows):
    x, wt, b = _data(n * c + h, n, c, h, w, o, k)
    layer = lower_conv2d(x.shape, wt, b, shift, relu, stride=stride, padding=pad, max_tile_rows=rows)
    got, stats = layer.run(x)
    want = conv2d_int8_reference(x, wt, b, shift, relu, stride=stride, padding=pad)
    np.testing.assert_array_equal(got, want)
    if shift:  # the shift keeps outputs in range: the check is not just of clipping (shift 0 saturates)
        assert len(np.unique(want)) > 10
    p = layer.plan
    assert stats.gemm_counter == n * p.ob * p.oh * p.ow * p.cb * k * k
    assert stats.out_store_nbytes == n * p.ob * p.oh * p.ow * 16
    # micro-op kernels load once; weights once per (half, output block) they are needed in
    kinds = [i.memory_type for i in layer.kernel.program if isinstance(i, Load)]
    assert kinds.count(MemType.UOP) == 1
    assert kinds.count(MemType.WGT) <= 2 * n * p.ob


def test_large_layer_tiles_and_overlaps():
    x, w, b = _data(5, 1, 64, 30, 30, 32, 3)
    layer = lower_conv2d(x.shape, w, b, 11, True, padding=1)
    p = layer.plan
    assert 1 < p.tile_rows < p.oh and len(p.tiles()) > 4
    assert p.cb * p.rows_in(p.tile_rows) * p.wp <= 1024 and p.tile_rows * p.ow <= 1023
    _, stats = layer.run(x)
    assert stats.cycles < sum(stats.busy_cycles.values())  # load/compute/store overlapped
    serial = [a for _, m, a, b in stats.timeline]
    assert serial != sorted(serial)  # not executed one after another in program order
    assert 0 < stats.utilisation <= 1


def test_dense_bit_exact():
    rng = np.random.default_rng(9)
    x = rng.integers(-128, 128, (3, 40), dtype=np.int8)
    w = rng.integers(-128, 128, (10, 40), dtype=np.int8)
    b = rng.integers(-1000, 1000, 10).astype(np.int32)
    got, _ = lower_dense(x.shape, w, b, 8).run(x[:, :, None, None])
    np.testing.assert_array_equal(got[:, :, 0, 0], dense_int8_reference(x, w, b, 8))


def test_dropping_load_tokens_is_caught():
    x, w, b = _data(1, 1, 16, 8, 8, 16, 3)
    layer = lower_conv2d(x.shape, w, b, 9, padding=1, max_tile_rows=1)
    # without load->compute waits, compute (run as early as tokens allow) races ahead of the loads
    layer.kernel.program = [replace(i, pop_prev=False) if isinstance(i, Gemm) else i for i in layer.kernel.program]
    with pytest.raises(VTADeadlockError,
                       match=r"FINISH: reached while the load module has not run instruction #1 LOAD INP"):
        layer.run(x)


def test_packing_round_trips_and_pads_channels():
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (2, 20, 3, 4), dtype=np.int8)
    packed = pack_activations(x, 16)
    assert packed.shape == (2, 2, 3, 4, 16) and not packed[:, 1, :, :, 4:].any()
    np.testing.assert_array_equal(unpack_activations(packed, 20), x)
    w = rng.integers(-128, 128, (20, 18, 3, 3), dtype=np.int8)
    wp = pack_weights(w, 16, 16)
    assert wp.shape == (2, 2, 3, 3, 16, 16)
    assert wp[1, 0, 2, 1, 3, 5] == w[19, 5, 2, 1] and wp[1, 1, 0, 0, 4, 2] == 0


@pytest.mark.parametrize("x_shape, w_shape, kwargs, match", [
    ((1, 16, 8, 8), (16, 16, 3, 3), {"padding": 16}, r"padding \(16, 16\) must be 0\.\.15"),
    ((1, 16, 8, 8), (16, 32, 3, 3), {}, "input has 16 channels, weight expects 32"),
    ((1, 16, 24, 24), (16, 16, 23, 23), {}, "a 23x23 kernel needs 529 weight tiles per channel block"),
    ((1, 16, 8, 8), (16, 16, 3, 3), {"threads": 3}, "3 virtual threads; 1 or 2"),
    ((1, 16, 4, 2000), (16, 16, 1, 1), {}, "one output row .* does not fit"),
])
def test_unsupported_layers_are_refused_clearly(x_shape, w_shape, kwargs, match):
    with pytest.raises(UnsupportedError, match=match):
        plan_conv2d(x_shape, w_shape, **kwargs)
