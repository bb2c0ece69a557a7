"""int8 kernels: QMatMul, QuantizeLinear and DequantizeLinear, and the requantization QConv shares.

The integer semantics are ir/ops/quant.py's, matched bit for bit. The fast QMatMul/QConv
kernels reduce over packed u8 x s8 words with a SIMD dot-product instruction (int8_dot.py:
vpdpbusd with AVX-512 VNNI, vpmaddubsw with AVX2 when the weights cannot saturate it):

    x (int8/uint8) --pack--> int32 words of 4 consecutive reduction elements as u8 (x + 128 for int8 x)
    w (int8, constant) --pack at compile time--> int32 words of the same 4 elements per output lane
    acc[lanes] += dot4(broadcast(x word), w words)             wrapping int32, like the reference
    y = requantize(acc + bias') (+ residual, out_zero_point, clip, Relu)  in the write-back from the tile

The u8 offset and x_zero_point fold into the bias: sum((x - zp) * w) = sum(xu * w) - (zp + off) * sum(w),
with xu = x + off; padding (spatial, and reduction elements past K) stores xu = zp + off, i.e. a
real 0. int32 arithmetic is modulo 2**32, so the folded sum wraps exactly as the reference does.
Other cases (run-time weights or bias, CPUs with neither instruction, weights that could
saturate vpmaddubsw) get the generic rules: plain int32 products, exact, LLVM-vectorized.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import CompileError
from ..ir.ops.quant import rounding_term
from .gemm import _ravel, _unravel
from .int8_dot import dot4, dot_kernel, pack_u8_word, pack_weight_words, pick_instruction, pick_tile
from .kernel import Kernel, LowerNode
from .rules import make_kernel, rule
from .schedule_common import lanes_for, schedule_injective
from .schedule_tiles import round_up, schedule_row_accumulator

# fractions of CpuTarget.peak_flops (fp32), measured by benchmarks/int8_kernels.py on the AVX-512 VNNI host:
# vpdpbusd kernels 400-1200 GOPS (2-4x the fp32 peak: 4 multiply-adds per lane and instruction);
# the generic rules 11-23 GOPS (LLVM widens to int32: vpmovsxbd + vpmulld)
EFFICIENCY_INT8 = 2.0
EFFICIENCY_GENERIC = 0.05


# ---------------------------------------------------------------- zero points, folded bias, requantization

def u8_offset(n: LowerNode) -> int:
    """What turns x into the u8 the dot instructions read: 128 for int8 x, 0 for uint8 x."""
    return 128 if n.inputs[0].type.dtype == "int8" else 0


def x_byte(n: LowerNode, value):
    """x element -> its u8 byte as int32 (x + 128 for int8 x)."""
    from tvm import tirx

    return tirx.Cast("int32", value) + tirx.const(u8_offset(n), "int32")


def x_pad_byte(n: LowerNode) -> int:
    """The u8 value of a real 0 (x == x_zero_point); CompileError when the zero point is out of x's range."""
    zp, dtype = n.attrs["x_zero_point"], n.inputs[0].type.dtype
    info = np.iinfo(dtype)
    if not info.min <= zp <= info.max:
        raise CompileError(f"node {n.name} ({n.op}): x_zero_point {zp} is outside {dtype} "
                           f"[{info.min}, {info.max}]")
    return zp + u8_offset(n)


def folded_bias(n: LowerNode, weight_sums: np.ndarray, channels_padded: int) -> np.ndarray:
    """int32[channels_padded]: bias - (x_zero_point + u8 offset) * sum(w) per output channel, wrapped."""
    bias = n.inputs[2].data.astype(np.int64) if len(n.inputs) > 2 else 0
    folded = ((bias - x_pad_byte(n) * weight_sums.astype(np.int64)) + 2**31) % 2**32 - 2**31
    return np.pad(folded.astype(np.int32), (0, channels_padded - len(weight_sums)))


def bias_is_constant(n: LowerNode) -> bool:
    """True when the bias (if any) is a constant, as the fast kernels fold it."""
    return len(n.inputs) < 3 or n.inputs[2].is_constant


class Requantize:
    """The requantization of ir/ops/quant.py as TIR: int32 accumulator of channel `ch` (and, for a
    QConv with a residual, the residual element at the same output index) -> out dtype.

    Per-tensor multiplier/shift become immediates; per-channel ones kernel constants
    (`inputs`/`args`, int64 [channels]); the residual (node input 3) is an input too.
    """

    def __init__(self, n: LowerNode):
        a = n.attrs
        self.out_dtype = a["out_dtype"]
        self.out_zero_point = a["out_zero_point"]
        info = np.iinfo(self.out_dtype)
        self.lo = max(self.out_zero_point, info.min) if a["activation"] == "Relu" else info.min
        self.hi = info.max
        self.tables = {"multiplier": np.asarray(a["multiplier"], np.int64), "shift": np.asarray(a["shift"], np.int64),
                       "rounding": rounding_term(a["shift"])}
        self.placeholders = {k: n.constant_placeholder(v, f"rq_{k}") for k, v in self.tables.items() if len(v) > 1}
        self.residual = n.placeholder(3, "residual") if n.op == "QConv" and len(n.inputs) > 3 else None
        if self.residual is not None:
            self.residual_terms = (a["residual_zero_point"], a["residual_multiplier"],
                                   int(rounding_term(a["residual_shift"])), a["residual_shift"])

    @property
    def inputs(self) -> list:
        return list(self.placeholders.values()) + ([self.residual] if self.residual is not None else [])

    @property
    def args(self) -> list:
        return [self.tables[k] for k in self.placeholders] + ([3] if self.residual is not None else [])

    def _value(self, key: str, ch):
        from tvm import tirx

        if key in self.placeholders:
            return self.placeholders[key][ch]
        return tirx.const(int(self.tables[key][0]), "int64")

    def __call__(self, acc, ch, out_index=None):
        """The output element for int32 accumulator `acc` (bias included) of output channel `ch`
        at output index `out_index` (read only for the residual)."""
        from tvm import tirx

        def i64(v):
            return tirx.const(int(v), "int64")

        v = (tirx.Cast("int64", acc) * self._value("multiplier", ch) + self._value("rounding", ch))
        v = (v >> self._value("shift", ch)) + i64(self.out_zero_point)
        if self.residual is not None:
            zero_point, multiplier, rounding, shift = self.residual_terms
            r = tirx.Cast("int64", self.residual[tuple(out_index)]) - i64(zero_point)
            v = v + ((r * i64(multiplier) + i64(rounding)) >> i64(shift))
        v = tirx.max(tirx.min(v, tirx.const(self.hi, "int64")), tirx.const(self.lo, "int64"))
        return tirx.Cast(self.out_dtype, v)


def wrapping_add(acc, bias):
    """int32 acc + bias modulo 2**32 (computed in int64 and truncated: no signed-overflow UB)."""
    from tvm import tirx

    return tirx.Cast("int32", tirx.Cast("int64", acc) + tirx.Cast("int64", bias))


def requantize_epilogue(n: LowerNode):
    """(placeholders, args, fn): the generic rules' write-back `fn(acc, ch, out_index)` =
    requantize(acc + bias[ch]) (+ the residual at out_index), reading the bias (node input 2, if
    any), the per-channel requantization tables and the residual."""
    rq = Requantize(n)
    bias = n.placeholder(2, "bias") if len(n.inputs) > 2 else None

    def fn(acc, ch, out_index=None):
        return rq(acc if bias is None else wrapping_add(acc, bias[ch]), ch, out_index)
    return ([bias] if bias is not None else []) + rq.inputs, ([2] if bias is not None else []) + rq.args, fn


def x_minus_zero_point(n: LowerNode, value):
    """x element - x_zero_point, as int32 (CompileError for a zero point outside x's range)."""
    from tvm import tirx

    x_pad_byte(n)
    return tirx.Cast("int32", value) - tirx.const(n.attrs["x_zero_point"], "int32")


# ---------------------------------------------------------------- QMatMul

@rule("QMatMul", name="qmatmul-int8", family="int8", efficiency=EFFICIENCY_INT8)
def qmatmul_int8(n: LowerNode) -> Kernel | None:
    """QMatMul with constant w (and bias): a register-tiled GEMM of dot instructions over packed
    x words and pre-packed weight panels, requantized from the tile."""
    from tvm import te, tirx

    x_shape, (k, cols) = n.inputs[0].type.shape, n.inputs[1].type.shape
    instr = pick_instruction(n.target.mcpu, n.inputs[1].data, 0) if n.inputs[1].is_constant else None
    if instr is None or not bias_is_constant(n):
        return None
    rows = math.prod(x_shape[:-1])
    vecs, mr = pick_tile(instr, cols, rows)
    bn = vecs * instr.lanes
    kq, rows_p, cols_p = -(-k // 4), round_up(rows, mr), round_up(cols, bn)
    w = np.pad(n.inputs[1].data, ((0, 4 * kq - k), (0, cols_p - cols)))
    w_words = pack_weight_words(w.reshape(kq, 4, cols_p // bn, bn).transpose(2, 0, 3, 1))
    bias = folded_bias(n, n.inputs[1].data.astype(np.int64).sum(axis=0), cols_p)

    x, lead = n.placeholder(0, "x"), x_shape[:-1]

    def x_byte_at(r, kk):
        return x_byte(n, x[(_unravel(r, lead) if len(lead) > 1 else (r,)) + (kk,)])

    x_pack = te.compute((rows, kq), lambda r, q: pack_u8_word(
        lambda i: x_byte_at(r, tirx.min(q * 4 + i, k - 1)), x_pad_byte(n),
        (lambda i: q * 4 + i < k) if k % 4 else None), name="x_pack")
    w_ph, b_ph = n.constant_placeholder(w_words, "w_words"), n.constant_placeholder(bias, "bias_folded")
    rq = Requantize(n)
    rk = te.reduce_axis((0, kq), name="q")
    clamp = (lambda r: r) if rows_p == rows else (lambda r: tirx.min(r, rows - 1))
    prod = te.compute((rows_p, cols_p), lambda r, j: te.sum(
        dot4(x_pack[clamp(r), rk], w_ph[j // bn, rk, j % bn]), axis=rk), name="product")
    out_shape = n.outputs[0].shape

    def out_value(*idx):
        r = _ravel(idx[:-1], lead)
        return rq(wrapping_add(prod[r, idx[-1]], b_ph[idx[-1]]), idx[-1])
    y = te.compute(out_shape, out_value, name="requant")

    def schedule(sch):
        blk = sch.get_sblock("product")
        acc = sch.cache_write(blk, 0, "local")
        r, j, q = sch.get_loops(blk)
        ro, ri = sch.split(r, [None, mr])
        jo, jv, jl = sch.split(j, [None, vecs, instr.lanes])
        sch.reorder(jo, ro, q, ri, jv, jl)
        sch.unroll(ri)
        sch.unroll(jv)
        par = sch.fuse(jo, ro)
        sch.parallel(par)
        sch.decompose_reduction(blk, q)
        sch.vectorize(sch.get_loops(sch.get_sblock("product_init"))[-1])
        sch.blockize(jl)
        sch.compute_inline(acc)  # the requantization reads the tile's accumulators directly
        out = sch.get_sblock("requant")
        loops = sch.get_loops(out)
        if len(loops) > 2:  # x's leading dims as one row loop, so that it maps onto the tile's rows
            sch.fuse(*loops[:-1])
        sch.reverse_compute_at(out, par)
        tile_loops = sch.get_loops(out)[1:]  # none when the tile is one element
        if tile_loops:
            sch.vectorize(tile_loops[-1])
        sch.parallel(sch.get_loops(sch.get_sblock("x_pack"))[0])

    desc = f"qmatmul int8 {instr.name}: tile {mr}x{bn}, K/4 {kq}, pre-packed w"
    return dot_kernel([x, w_ph, b_ph] + rq.inputs, [y], schedule, [0, w_words, bias] + rq.args, desc,
                      "product_update_o", instr)


@rule("QMatMul", name="qmatmul-generic", family="int8-generic", efficiency=EFFICIENCY_GENERIC, fallback=True)
def qmatmul_generic(n: LowerNode) -> Kernel:
    """Any QMatMul: int32 products with a row accumulator over the output columns, requantized on write-back."""
    from tvm import te, tirx

    x, w = n.placeholder(0, "x"), n.placeholder(1, "w")
    k = n.inputs[1].type.shape[0]
    out_shape = n.outputs[0].shape
    rk = te.reduce_axis((0, k), name="k")
    prod = te.compute(out_shape, lambda *i: te.sum(
        x_minus_zero_point(n, x[i[:-1] + (rk,)]) * tirx.Cast("int32", w[rk, i[-1]]), axis=rk), name="product")
    ins, args, write_back = requantize_epilogue(n)
    y = te.compute(out_shape, lambda *i: write_back(prod(*i), i[-1]), name="requant")
    return make_kernel([x, w] + ins, [y],
                       lambda sch: schedule_row_accumulator(sch, "product", lanes_for(n.target, "int32"), "requant"),
                       [0, 1] + args, "qmatmul generic (int32 row accumulator)")


# ---------------------------------------------------------------- QuantizeLinear / DequantizeLinear

def _quant_params(n: LowerNode):
    """([scale, zero point] placeholders, [their readers]): reader(index of x) -> the entry of
    `axis` for a per-axis parameter, the only value of a per-tensor one."""
    axis = n.attrs["axis"] % n.inputs[0].type.rank
    params, readers = [], []
    for i in range(1, len(n.inputs)):
        t = n.inputs[i].type
        ph = n.placeholder(i, ("scale", "zero_point")[i - 1])
        params.append(ph)
        readers.append(lambda index, ph=ph, t=t: ph[(index[axis],) if t.numel != 1 else (0,) * t.rank])
    return params, readers


@rule("QuantizeLinear", name="quantize-linear")
def quantize_linear(n: LowerNode) -> Kernel:
    """saturate(round_half_even(x / scale) + zero_point), per tensor or per axis; the zero point is
    added and the result clipped in float64, as the reference does (exact for int32 outputs too)."""
    from tvm import te, tirx

    x = n.placeholder(0, "x")
    params, at = _quant_params(n)
    dtype = n.outputs[0].dtype
    info = np.iinfo(dtype)

    def value(*i):
        q = tirx.Cast("float64", tirx.nearbyint(x(*i) / at[0](i)))
        if len(at) > 1:
            q = q + tirx.Cast("float64", at[1](i))
        q = tirx.max(tirx.min(q, tirx.const(info.max, "float64")), tirx.const(info.min, "float64"))
        return tirx.Cast(dtype, q)

    y = te.compute(n.outputs[0].shape, value, name="quantize")
    return make_kernel([x] + params, [y], schedule_injective(lanes_for(n.target, "float32")),
                       list(range(len(n.inputs))), "quantize-linear (injective)")


@rule("DequantizeLinear", name="dequantize-linear")
def dequantize_linear(n: LowerNode) -> Kernel:
    """(x - zero_point) * scale as float32; with int32 x or zero point in float64 (as the reference)
    rounded once: a 32-bit difference times a float32 scale is not exact in float32."""
    from tvm import te, tirx

    x = n.placeholder(0, "x")
    params, at = _quant_params(n)
    wide = "int32" in [t.type.dtype for t in n.inputs[:1] + n.inputs[2:]]
    ftype, itype = ("float64", "int64") if wide else ("float32", "int32")

    def value(*i):
        d = tirx.Cast(itype, x(*i))
        if len(at) > 1:
            d = d - tirx.Cast(itype, at[1](i))
        return tirx.Cast("float32", tirx.Cast(ftype, d) * tirx.Cast(ftype, at[0](i)))

    y = te.compute(n.outputs[0].shape, value, name="dequantize")
    return make_kernel([x] + params, [y], schedule_injective(lanes_for(n.target, ftype)),
                       list(range(len(n.inputs))), "dequantize-linear (injective)")
