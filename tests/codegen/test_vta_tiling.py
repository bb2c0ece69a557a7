"""VTA conv2d tiling: randomized layers (kernel sizes 1/3/5/7, strides, padding, ragged channels) and
shapes that overflow the inp / wgt / acc buffers, bit-exact on the simulator against the IR's QConv
(ir/ops/quant.py, power-of-two mode), with one and two virtual threads."""
import numpy as np
import pytest

from nnforge.codegen.vta import lower_conv2d
from nnforge.ir import get_op
from nnforge.runtime.vta import DEFAULT_CONFIG, Load, MemType


def _qconv(x, w, b, shift, relu, stride, pad):
    """The IR's definition of the layer (the interpreter's QConv)."""
    op = get_op("QConv")
    attrs = op.check_attrs({"strides": [stride] * 2, "pads": [pad] * 4, "shift": [shift],
                            "activation": "Relu" if relu else ""})
    return op.run([x, w, b], attrs)[0]


def _layer(seed, n, c, h, w, o, k):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n, c, h, w), dtype=np.int8)
    wt = rng.integers(-128, 128, (o, c, k, k), dtype=np.int8)
    shift = int(np.clip(np.round(np.log2(np.sqrt(c * k * k) * 74 * 74 / 40)), 0, 15))  # outputs ~ +-40
    bias = rng.integers(-(8 << shift), 8 << shift, o).astype(np.int32)
    return x, wt, bias, shift, rng


def _check(x, wt, bias, shift, relu, stride, pad, **kwargs):
    layer = lower_conv2d(x.shape, wt, bias, shift, relu, stride=stride, padding=pad, **kwargs)
    got, stats = layer.run(x)
    want = _qconv(x, wt, bias, shift, relu, stride, pad)
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(want)) >= min(20, want.size // 8)  # not all clipped: the comparison says something
    p = layer.plan
    assert stats.gemm_counter == p.n * p.ob * p.oh * p.ow * p.cb * p.kh * p.kw
    return layer, stats


@pytest.mark.parametrize("seed", range(12))
def test_random_layers_bit_exact(seed):
    rng = np.random.default_rng(100 + seed)
    k = [1, 3, 5, 7][seed % 4]
    stride = 1 + seed % 2
    pad = int(rng.integers(0, k // 2 + 1))
    c, o = int(rng.integers(1, 50)), int(rng.integers(1, 40))  # mostly not multiples of 16
    h, w = int(rng.integers(k, k + 8)), int(rng.integers(k, k + 8))
    x, wt, bias, shift, _ = _layer(seed, int(rng.integers(1, 3)), c, h, w, o, k)
    _check(x, wt, bias, shift, bool(seed % 3 == 0), stride, pad, max_tile_rows=int(rng.integers(1, 4)),
           max_chunk_blocks=int(rng.integers(1, 3)), threads=int(rng.integers(1, 3)))


def test_weight_buffer_overflow_forces_channel_tiling():
    # 64 channel blocks x 9 taps = 576 weight tiles per output block > 512 in a weight half
    x, wt, bias, shift, _ = _layer(1, 1, 1024, 3, 3, 20, 3)
    layer, _ = _check(x, wt, bias, shift, True, 1, 1)
    p = layer.plan
    assert p.chunks == 2 and p.chunk_blocks * 9 <= DEFAULT_CONFIG.depth("wgt") // 2


def test_input_buffer_overflow_forces_channel_tiling():
    # 32 blocks x 3 rows x 18 columns = 1728 inp elements for one output row > 1024 in an inp half
    x, wt, bias, shift, _ = _layer(2, 1, 512, 16, 16, 16, 3)
    layer, _ = _check(x, wt, bias, shift, False, 1, 1)
    p = layer.plan
    assert p.chunks > 1 and p.chunk_blocks * p.rows_in(p.tile_rows) * p.wp <= DEFAULT_CONFIG.depth("inp") // 2


def test_acc_buffer_overflow_forces_row_tiling():
    # 40 x 40 outputs = 1600 acc rows > 1023 in an acc half
    x, wt, bias, shift, _ = _layer(3, 1, 16, 40, 40, 16, 1)
    layer, _ = _check(x, wt, bias, shift, False, 1, 0)
    p = layer.plan
    assert p.tile_rows * p.ow <= (DEFAULT_CONFIG.depth("acc") - 1) // 2 and len(p.tiles()) > 1


@pytest.mark.parametrize("chunks", [2, 3])
def test_channel_chunks_accumulate_and_weights_stay_resident(chunks):
    x, wt, bias, shift, _ = _layer(4, 1, 48, 9, 9, 32, 3)
    layer, stats = _check(x, wt, bias, shift, True, 2, 1, max_chunk_blocks=4 - chunks, max_tile_rows=2)
    p = layer.plan
    assert p.chunks == chunks
    wgt_loads = [i for i in layer.kernel.program if isinstance(i, Load) and i.memory_type == MemType.WGT]
    # two chunks alternate between the two halves, so each half keeps its chunk's weights
    assert len(wgt_loads) == 2 * p.ob if chunks == 2 else 2 * p.ob < len(wgt_loads) <= len(p.tiles()) * chunks
    assert stats.wgt_load_nbytes == sum(i.x_size for i in wgt_loads) * 256


def test_two_virtual_threads_overlap_and_give_the_same_result():
    x, wt, bias, shift, _ = _layer(5, 1, 64, 28, 28, 32, 3)
    one, s1 = _check(x, wt, bias, shift, True, 1, 1, threads=1)
    two, s2 = _check(x, wt, bias, shift, True, 1, 1, threads=2)
    assert s2.gemm_counter == s1.gemm_counter
    assert s2.cycles < s1.cycles  # loads of tile t+1 hide behind compute of tile t
    # one chunk: weight halves alternate by output block, so each block's weights load once
    assert len(two.plan.tiles()) > 2 * two.plan.ob and s2.wgt_load_nbytes == s1.wgt_load_nbytes == wt.size
