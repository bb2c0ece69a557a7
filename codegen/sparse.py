"""Block-sparse (BSR) kernels for Gemm/MatMul and 1x1 Conv whose constant weights are mostly zero.

A weight is seen as a matrix W[out, in] (Gemm's B transposed unless transB, MatMul's B
transposed, a 1x1 Conv's [M, C]) and stored as BSR: the nonzero `br x bc` blocks of each
block row, `data[nnzb, bc, br]`, their block columns `indices[nnzb]` and the row starts
`indptr[out/br + 1]`. The block shape is chosen per layer from the weight itself
(`choose_block`: the fewest vector instructions, counting the zeros stored inside
nonzero blocks), so a model pruned with 16x1, 4x4 or 1x8 blocks, or unstructured, gets
the layout that suits its pattern. Two kernels:

    Gemm/MatMul  out[m, n] = sum_k A[m, k] W[n, k]: one SIMD vector holds the br outputs of
                 a block row (br = the target's lanes when the pattern allows), a register
                 tile of up to ROW_TILE rows of A reuses each loaded weight vector; with fewer
                 rows, each of a block's bc columns has its own accumulators (summed at the
                 end) so that a batch-1 row is not one chain of dependent FMAs;
    1x1 Conv     out[b, m, p] = sum_c W[m, c] X[b, c, p] (NCHW): vectors run over pixels, a
                 register tile of br output channels x PIXEL_VECTORS vectors; every stored
                 weight is a broadcast FMA, so unstructured (1x1 blocks) sparsity works too.

Both are parallel over block rows (and pixel tiles). They are written as TIR loops with the
IRBuilder, not TE: `te.create_prim_func` places a data-dependent reduction (the nonzero
blocks of a row) in a nested block beneath the vector loop, where no schedule primitive can
move it. The rules belong to the family "sparse" (`--schedule sparse=off|on`); the cost model
charges them for the values they store and the block indices they read, so the sparse
kernel wins only where the weight is sparse enough (`inspect --schedules` shows both), and for
the FMA latency when a register tile has too few independent accumulators.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .conv2d import tile_cycles_per_fma
from .conv2d_generic import ConvEpilogue, ConvGeometry
from .kernel import Kernel, LowerNode
from .rules import rule

MAX_STORED_FRACTION = 0.6  # above this many stored values (with fill-in), dense kernels always win
ROW_TILE = 8  # rows of A per register tile in the Gemm kernel
MAX_ACCUMULATORS = 24  # accumulator vectors per register tile (AVX-512 has 32 registers)
PIXEL_VECTORS = 4  # pixel vectors per register tile row in the 1x1 conv kernel (br x this <= MAX_ACCUMULATORS)
BLOCK_OVERHEAD = 1.0  # cost of reading one block's column index, in vector FMAs
# fraction of peak FLOPs (counting every SIMD lane computed, stored zeros included): measured by
# benchmarks/sparse.py (AVX-512, busy machine) 0.45-0.8 on 1x1 convs and 16-row FCs at 50-95%
# sparsity; batch-1 FCs are memory bound either way
EFFICIENCY_SPARSE = 0.5


@dataclass(frozen=True)
class BsrMatrix:
    """A W[out, in] matrix in block-sparse rows (see the module doc)."""

    br: int
    bc: int
    data: np.ndarray  # [nnzb, bc, br] float32
    indices: np.ndarray  # [nnzb] int32 block column
    indptr: np.ndarray  # [out / br + 1] int32

    @property
    def stored(self) -> int:
        """Values stored, zeros inside nonzero blocks included."""
        return self.data.size

    def describe(self, shape) -> str:
        return (f"BSR {self.br}x{self.bc} blocks, {self.indices.size} of "
                f"{math.prod(shape) // (self.br * self.bc)} stored ({self.stored / math.prod(shape):.1%} of the weight)")


def nonzero_blocks(w: np.ndarray, br: int, bc: int) -> np.ndarray:
    """[out/br, in/bc] bool: which br x bc blocks of w[out, in] hold a nonzero."""
    o, i = w.shape
    return np.any(w.reshape(o // br, br, i // bc, bc) != 0, axis=(1, 3))


def to_bsr(w: np.ndarray, br: int, bc: int) -> BsrMatrix:
    """w[out, in] (br | out, bc | in) as a BsrMatrix; zero blocks dropped, block order row-major."""
    o, i = w.shape
    keep = nonzero_blocks(w, br, bc)
    blocks = w.reshape(o // br, br, i // bc, bc).transpose(0, 2, 3, 1)  # [row, col, bc, br]
    indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32)
    data = np.ascontiguousarray(blocks[keep], dtype=np.float32).reshape(-1, bc, br)
    return BsrMatrix(br, bc, data, np.nonzero(keep)[1].astype(np.int32), indptr)


def choose_block(w: np.ndarray, candidates, cost) -> tuple | None:
    """The (br, bc) among `candidates` dividing w's shape with the least `cost(nnzb, br, bc)`;
    None when even that one stores more than MAX_STORED_FRACTION of the values."""
    if np.count_nonzero(w) > MAX_STORED_FRACTION * w.size:  # one cheap pass settles dense weights
        return None
    best = None
    for br, bc in candidates:
        if w.shape[0] % br or w.shape[1] % bc:
            continue
        nnzb = int(nonzero_blocks(w, br, bc).sum())
        key = (cost(nnzb, br, bc), -br * bc)
        if nnzb * br * bc <= MAX_STORED_FRACTION * w.size and (best is None or key < best[0]):
            best = key, (br, bc)
    return None if best is None else best[1]


def _gemm_candidates(lanes: int):
    return [(br, bc) for br in (lanes, lanes // 2, 4, 1) for bc in (1, 2, 4, 8)]


def _gemm_cost(lanes: int):
    """Vector FMAs per row of A: one per block column (width br <= lanes), plus the index reads."""
    return lambda nnzb, br, bc: nnzb * (bc * math.ceil(br / lanes) + BLOCK_OVERHEAD)


def _conv_cost(nnzb, br, bc):
    """Vector FMAs per pixel vector: one per stored value, plus the index reads."""
    return nnzb * (br * bc + BLOCK_OVERHEAD)


_CONV_CANDIDATES = [(br, bc) for br in (1, 2, 4, 8, 16) for bc in (1, 2, 4, 8)]


@dataclass
class DenseSparseProduct:
    """A Gemm/MatMul node as out[rows, cols] = alpha * A[rows, k] W[cols, k]^T + bias[cols]."""

    rows: int
    k: int
    cols: int
    w: np.ndarray  # [cols, k]
    trans_a: bool
    alpha: float
    bias: np.ndarray | None  # [cols], beta * C already applied


def dense_sparse_product(n: LowerNode) -> DenseSparseProduct | None:
    """The node as a DenseSparseProduct, or None: not float32, B not a constant matrix, or a
    Gemm whose C is not a per-column bias constant (the dense kernels handle those)."""
    a, b = n.inputs[0], n.inputs[1]
    if n.outputs[0].dtype != "float32" or not b.is_constant or len(b.type.shape) != 2 or 0 in n.outputs[0].shape:
        return None
    if n.op == "MatMul":
        if len(a.type.shape) < 2:
            return None
        k, cols = b.type.shape
        return DenseSparseProduct(math.prod(a.type.shape[:-1]), k, cols, b.data.T, False, 1.0, None)
    ta, tb, beta = n.attrs["transA"], n.attrs["transB"], n.attrs["beta"]
    rows, k = a.type.shape[::-1] if ta else a.type.shape
    w = b.data if tb else b.data.T
    bias = None
    if len(n.inputs) > 2 and beta != 0.0:
        c = n.inputs[2]
        if not c.is_constant or c.data.size != w.shape[0] or c.type.shape not in ((w.shape[0],), (1, w.shape[0])):
            return None
        bias = (c.data.reshape(-1) * np.float32(beta)).astype(np.float32)
    return DenseSparseProduct(rows, k, w.shape[0], w, bool(ta), n.attrs["alpha"], bias)


def _sparse_kernel(emit, n: LowerNode, bsr: BsrMatrix, flops: float, in_bytes: int, shape, extra) -> Kernel:
    """Wrap `emit(T, params)` into a Kernel whose cost the model reads from the stored blocks.

    Args:
        emit: emits the loops; params are buffers of the node's first input, data, indices,
            indptr, the `extra` inputs, then the output.
        flops: FLOPs the kernel executes, counting every SIMD lane it computes, times the
            register tile's slowdown from the FMA latency (conv2d.tile_cycles_per_fma).
        in_bytes: bytes of the first input read from memory (it is reused from cache).
        extra: more kernel args (Kernel.args entries: node input indices or constant arrays).
    """
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T

    args = [0, bsr.data, bsr.indices, bsr.indptr] + list(extra)
    types = [(a.shape, a.dtype.name) if isinstance(a, np.ndarray) else (n.inputs[a].type.shape, "float32")
             for a in args] + [(n.outputs[0].shape, "float32")]
    with IRBuilder() as ib:
        with T.prim_func():
            T.func_attr({"tirx.noalias": True})
            emit(T, [T.arg(f"p{i}", T.buffer(s, d)) for i, (s, d) in enumerate(types)])
    kernel = Kernel(ib.get(), args, bsr.describe(shape))
    weight_bytes = bsr.data.nbytes + bsr.indices.nbytes + bsr.indptr.nbytes
    kernel.extra["flops"] = flops
    kernel.extra["bytes"] = in_bytes + weight_bytes + n.outputs[0].nbytes
    return kernel


@rule("Gemm", "MatMul", name="bsr-dense", family="sparse", efficiency=EFFICIENCY_SPARSE)
def bsr_dense(n: LowerNode) -> Kernel | None:
    """float32 Gemm/MatMul with a sparse constant B: BSR weights, vectors over a block row's outputs."""
    prod = dense_sparse_product(n)
    if prod is None:
        return None
    lanes = n.target.vector_lanes
    block = choose_block(prod.w, _gemm_candidates(lanes), _gemm_cost(lanes))
    if block is None:
        return None
    bsr = to_bsr(prod.w, *block)
    bias = prod.bias
    sets = 1 if prod.rows >= ROW_TILE else bsr.bc  # accumulator sets: enough rows hide the FMA latency
    mt = min(ROW_TILE, prod.rows, max(1, MAX_ACCUMULATORS // sets))
    full, tail = divmod(prod.rows, mt)

    def emit(T, params):
        from tvm import tirx

        a_in, data, indices, indptr, *rest = params
        out = rest[-1].view(prod.rows, prod.cols)
        bias_buf = rest[0] if bias is not None else None
        a = a_in.view(prod.k, prod.rows) if prod.trans_a else a_in.view(prod.rows, prod.k)
        a_at = (lambda r, k: a[k, r]) if prod.trans_a else (lambda r, k: a[r, k])
        br, bc = bsr.br, bsr.bc

        def tile(i, r0, nrows):
            acc = T.decl_buffer((sets, nrows, br), "float32", scope="local")
            with T.unroll(0, sets) as c:
                with T.unroll(0, nrows) as r:
                    with T.vectorized(0, br) as v:
                        T.buffer_store(acc, tirx.const(0.0, "float32"), [c, r, v])
            with T.serial(indptr[i], indptr[i + 1]) as j:
                with T.unroll(0, bc) as c:
                    with T.unroll(0, nrows) as r:
                        with T.vectorized(0, br) as v:
                            product = a_at(r0 + r, indices[j] * bc + c) * data[j, c, v]
                            T.buffer_store(acc, acc[c % sets, r, v] + product, [c % sets, r, v])
            with T.unroll(0, nrows) as r:
                with T.vectorized(0, br) as v:
                    value = acc[0, r, v]
                    for c in range(1, sets):
                        value = value + acc[c, r, v]
                    if prod.alpha != 1.0:
                        value = value * tirx.const(prod.alpha, "float32")
                    if bias_buf is not None:
                        value = value + bias_buf[i * br + v]
                    T.buffer_store(out, value, [r0 + r, i * br + v])

        with T.parallel(0, prod.cols // br) as i:
            if full:
                with T.serial(0, full) as t:
                    tile(i, t * mt, mt)
            if tail:
                tile(i, full * mt, tail)

    vector_ops = bsr.indices.size * bsr.bc * math.ceil(bsr.br / lanes)  # per row of A, each `lanes` wide
    latency = 2 * tile_cycles_per_fma(sets, mt)  # > 1: too few independent accumulators
    return _sparse_kernel(emit, n, bsr, 2.0 * prod.rows * vector_ops * lanes * latency,
                          n.inputs[0].type.nbytes, prod.w.shape, [] if bias is None else [bias])


def _is_plain_1x1(g: ConvGeometry) -> bool:
    return (g.kh == g.kw == 1 and g.groups == 1 and g.sh == g.sw == 1 and g.pt == g.pl == 0
            and (g.oh, g.ow) == (g.h, g.w))


@rule("Conv", name="bsr-conv1x1", family="sparse", efficiency=EFFICIENCY_SPARSE)
def bsr_conv1x1(n: LowerNode) -> Kernel | None:
    """float32 1x1 Conv (stride 1, no padding, one group) with sparse constant weights: BSR
    weights, vectors over pixels, the conv epilogue (bias, residual, activation) fused."""
    if n.outputs[0].dtype != "float32" or not n.inputs[1].is_constant:
        return None
    g = ConvGeometry.of(n)
    if not _is_plain_1x1(g):
        return None
    w = n.inputs[1].data.reshape(g.m, g.c)
    block = choose_block(w, _CONV_CANDIDATES, _conv_cost)
    if block is None:
        return None
    bsr = to_bsr(w, *block)
    lanes, pixels = n.target.vector_lanes, g.h * g.w
    pv = max(1, min(PIXEL_VECTORS, MAX_ACCUMULATORS // bsr.br, pixels // lanes))
    width = pv * lanes
    full, tail = divmod(pixels, width)
    epilogue = ConvEpilogue.of(n)

    def emit(T, params):
        from tvm import tirx

        x_in, data, indices, indptr, *rest = params
        x, out = x_in.view(g.n, g.c, pixels), rest[-1].view(g.n, g.m, pixels)
        operands = iter(rest[:-1])  # epilogue.inputs, in order
        bias = next(operands) if epilogue.bias is not None else None
        residual = next(operands).view(g.n, g.m, 1, pixels) if epilogue.residual is not None else None
        epilogue_tir = ConvEpilogue(bias, residual, epilogue.activation)  # over buffers, not te tensors
        br, bc = bsr.br, bsr.bc

        def tile(b, i, p0, w_):
            acc = T.decl_buffer((br, w_), "float32", scope="local")
            with T.unroll(0, br) as r:
                with T.vectorized(0, w_) as p:
                    T.buffer_store(acc, tirx.const(0.0, "float32"), [r, p])
            with T.serial(indptr[i], indptr[i + 1]) as j:
                with T.unroll(0, bc) as c:
                    with T.unroll(0, br) as r:
                        with T.vectorized(0, w_) as p:
                            T.buffer_store(acc, acc[r, p] + data[j, c, r] * x[b, indices[j] * bc + c, p0 + p], [r, p])
            with T.unroll(0, br) as r:
                with T.vectorized(0, w_) as p:
                    value = epilogue_tir(acc[r, p], b, i * br + r, 0, p0 + p)
                    T.buffer_store(out, value, [b, i * br + r, p0 + p])

        blocks = g.m // br
        if full:
            with T.parallel(0, g.n * blocks * full) as f:
                tile(f // (blocks * full), f // full % blocks, f % full * width, width)
        if tail:
            with T.parallel(0, g.n * blocks) as f:
                tile(f // blocks, f % blocks, full * width, tail)

    flops = 2.0 * g.n * bsr.stored * (full * width + tail) * 2 * tile_cycles_per_fma(pv, bsr.br)
    return _sparse_kernel(emit, n, bsr, flops, n.inputs[0].type.nbytes, w.shape, epilogue.args)
