"""Data-movement kernels: Reshape, Concat, Split, Slice, Expand, Tile, Transpose, Gather,
GatherElements, Pad (Resize is in resize.py).

Every op whose output is an affine view of its inputs (Reshape, Concat, Split, Slice,
Expand, Tile, and Transposes that keep the last axis) becomes a list of *strided copies*
written directly as TIR: each copy is a loop nest over flat buffers with static
offsets and strides, so there is no per-element div/mod or select. The loops are
merged where the memory layout allows, the outer ones are fused into one parallel
loop and the innermost contiguous run is vectorized. The other ops are TE computes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .kernel import Kernel, LowerNode
from .rules import make_kernel, rule
from .schedule_common import PARALLEL_GRAIN, lanes_for, schedule_injective

VECTOR_CHUNK = 4  # vector registers per vectorized copy iteration


def row_major_strides(shape) -> list:
    """Element strides of a contiguous array of `shape`."""
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return strides[::-1]


@dataclass
class StridedCopy:
    """dst[dst_offset + sum(i_k * dst_strides[k])] = src[src_offset + sum(i_k * src_strides[k])]
    for every index vector i < extents. `src`/`dst` number the PrimFunc's parameters."""

    src: int
    dst: int
    extents: list
    src_strides: list
    dst_strides: list
    src_offset: int = 0
    dst_offset: int = 0

    def merged(self) -> "StridedCopy":
        """The same copy with size-1 dims dropped and adjacent dims merged where both
        sides are contiguous across them (fewer, longer loops)."""
        dims = [(e, s, d) for e, s, d in zip(self.extents, self.src_strides, self.dst_strides) if e != 1]
        out = []
        for e, s, d in dims:
            if out and out[-1][1] == s * e and out[-1][2] == d * e:
                out[-1] = (out[-1][0] * e, s, d)
            else:
                out.append((e, s, d))
        out = out or [(1, 0, 0)]
        return StridedCopy(self.src, self.dst, *map(list, zip(*out)), self.src_offset, self.dst_offset)


def copy_kernel(n: LowerNode, copies: list, description: str) -> Kernel:
    """A Kernel whose PrimFunc performs `copies` between the node's inputs and outputs.

    Args:
        n: the node; parameters are its inputs (in order) then its outputs.
        copies: StridedCopy list; zero-size copies are skipped.
        description: the schedule description.
    Returns:
        a Kernel taking the node inputs as they are.
    """
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T

    types = [i.type for i in n.inputs] + list(n.outputs)
    with IRBuilder() as ib:
        with T.prim_func():
            T.func_attr({"tirx.noalias": True})
            params = [T.arg(f"p{i}", T.buffer(t.shape, t.dtype)) for i, t in enumerate(types)]
            # flat 1-D views of the parameters: every copy addresses elements linearly
            flat = [p.view(max(t.numel, 1)) for p, t in zip(params, types)]
            for c in copies:
                if math.prod(c.extents) > 0:
                    _emit_copy(T, flat, c.merged(), lanes_for(n.target, types[c.dst].dtype))
    return Kernel(ib.get(), list(range(len(n.inputs))), description)


def _emit_copy(T, flat, c: StridedCopy, lanes: int):
    """Emit one loop nest: the outer loops fused (parallel when large), the innermost
    contiguous run split into vectorized chunks plus a vectorized tail."""
    *outer, inner = c.extents
    contiguous = c.dst_strides[-1] == 1 and c.src_strides[-1] in (0, 1)
    chunk = lanes * VECTOR_CHUNK
    if contiguous and inner > chunk:
        _emit_rows(T, flat, c, outer + [inner // chunk], [c.src_strides[-1] * chunk, chunk], chunk,
                   0, lanes)
        if inner % chunk:
            _emit_rows(T, flat, c, outer, [], inner % chunk, inner - inner % chunk, lanes)
    else:
        _emit_rows(T, flat, c, outer, [], inner, 0, lanes if contiguous else 0)


def _emit_rows(T, flat, c: StridedCopy, row_extents, chunk_strides, row_len, row_start, lanes):
    """for r in rows (fused, parallel if big): for j < row_len: copy element row_start + j.

    `row_extents` are c.extents[:-1] plus optionally a chunk loop whose (src, dst)
    strides are `chunk_strides`; lanes 0 means the inner loop is not vectorized."""
    src_strides = c.src_strides[:-1] + chunk_strides[:1]
    dst_strides = c.dst_strides[:-1] + chunk_strides[1:]
    rows = math.prod(row_extents)
    loop = T.parallel if rows * row_len >= PARALLEL_GRAIN and rows > 1 else T.serial
    with loop(0, rows) as r:
        src, dst = c.src_offset + row_start * c.src_strides[-1], c.dst_offset + row_start * c.dst_strides[-1]
        rest = r
        for k in reversed(range(len(row_extents))):
            i = rest % row_extents[k] if k else rest
            rest = rest // row_extents[k]
            src, dst = src + i * src_strides[k], dst + i * dst_strides[k]
        inner = T.vectorized if lanes and row_len > 1 else T.serial
        with inner(0, row_len) as j:
            T.buffer_store(flat[c.dst], flat[c.src][src + j * c.src_strides[-1]],
                           [dst + j * c.dst_strides[-1]])


def contiguous_copy(src: int, dst: int, numel: int, src_offset=0, dst_offset=0) -> StridedCopy:
    """A plain memcpy of `numel` elements."""
    return StridedCopy(src, dst, [numel], [1], [1], src_offset, dst_offset)


# -- affine copies --------------------------------------------------------------------
@rule("Reshape")
def reshape_copy(n: LowerNode) -> Kernel:
    return copy_kernel(n, [contiguous_copy(0, 1, n.outputs[0].numel)], "contiguous copy")


def _axis_blocks(shape, axis):
    """(rows, row length) of a row-major array seen as [prod(shape[:axis]), shape[axis:]]."""
    return math.prod(shape[:axis]), math.prod(shape[axis:])


@rule("Concat")
def concat_copies(n: LowerNode) -> Kernel:
    axis, out_shape = n.attrs["axis"], n.outputs[0].shape
    rows, out_row = _axis_blocks(out_shape, axis)
    copies, offset = [], 0
    for i, inp in enumerate(n.inputs):
        _, row = _axis_blocks(inp.type.shape, axis)
        copies.append(StridedCopy(i, len(n.inputs), [rows, row], [row, 1], [out_row, 1], 0, offset))
        offset += row
    return copy_kernel(n, copies, f"one strided copy per input along axis {axis}")


@rule("Split")
def split_copies(n: LowerNode) -> Kernel:
    axis = n.attrs["axis"]
    rows, in_row = _axis_blocks(n.inputs[0].type.shape, axis)
    copies, offset = [], 0
    for i, out in enumerate(n.outputs):
        _, row = _axis_blocks(out.shape, axis)
        copies.append(StridedCopy(0, 1 + i, [rows, row], [in_row, 1], [row, 1], offset, 0))
        offset += row
    return copy_kernel(n, copies, f"one strided copy per output along axis {axis}")


@rule("Slice")
def slice_copy(n: LowerNode) -> Kernel:
    in_shape, out_shape = n.inputs[0].type.shape, n.outputs[0].shape
    src_strides = row_major_strides(in_shape)
    offset = 0
    for axis, start, step in zip(n.attrs["axes"], n.attrs["starts"], n.attrs["steps"]):
        if out_shape[axis]:
            offset += start * src_strides[axis]
        src_strides[axis] *= step
    copy = StridedCopy(0, 1, list(out_shape), src_strides, row_major_strides(out_shape), offset)
    return copy_kernel(n, [copy], "strided copy")


@rule("Expand")
def expand_copy(n: LowerNode) -> Kernel:
    in_shape, out_shape = n.inputs[0].type.shape, n.outputs[0].shape
    lead = len(out_shape) - len(in_shape)
    in_strides = row_major_strides(in_shape)
    # broadcast dimensions read the same element again: source stride 0
    src_strides = [0] * lead + [s if d != 1 else 0 for d, s in zip(in_shape, in_strides)]
    copy = StridedCopy(0, 1, list(out_shape), src_strides, row_major_strides(out_shape))
    return copy_kernel(n, [copy], "broadcasting strided copy")


@rule("Tile")
def tile_copy(n: LowerNode) -> Kernel:
    in_shape, out_shape = n.inputs[0].type.shape, n.outputs[0].shape
    extents, src_strides, dst_strides = [], [], []
    # output axis a = (repeat r, position d): two loops, the repeat one re-reads the source
    for d, r, s_in, s_out in zip(in_shape, n.attrs["repeats"], row_major_strides(in_shape),
                                 row_major_strides(out_shape)):
        extents += [r, d]
        src_strides += [0, s_in]
        dst_strides += [d * s_out, s_out]
    return copy_kernel(n, [StridedCopy(0, 1, extents, src_strides, dst_strides)], "tiling strided copy")


@rule("Transpose")
def transpose_rows(n: LowerNode) -> Kernel | None:
    """Transposes that keep the innermost axis (after merging) copy contiguous rows."""
    perm, in_shape = n.attrs["perm"], n.inputs[0].type.shape
    in_strides = row_major_strides(in_shape)
    copy = StridedCopy(0, 1, [in_shape[p] for p in perm], [in_strides[p] for p in perm],
                       row_major_strides(n.outputs[0].shape)).merged()
    if copy.src_strides[-1] != 1:
        return None
    return copy_kernel(n, [copy], "strided copy of contiguous rows")


TRANSPOSE_TILE = 16


@rule("Transpose", fallback=True)
def transpose_tiled(n: LowerNode) -> Kernel:
    """General transpose: the output's innermost axis and the output axis that is
    contiguous in the input are tiled together, so reads and writes both stay in cache."""
    from tvm import te

    perm = n.attrs["perm"]
    x = n.placeholder(0)
    inverse = np.argsort(perm)
    y = te.compute(n.outputs[0].shape, lambda *i: x(*(i[inverse[a]] for a in range(len(perm)))),
                   name="transpose")
    read_axis = int(inverse[len(perm) - 1])  # output axis walking the input contiguously

    def schedule(sch):
        block = sch.get_sblock("transpose")
        loops = sch.get_loops(block)
        if read_axis == len(loops) - 1 or n.outputs[0].shape[read_axis] < TRANSPOSE_TILE:
            return schedule_injective(lanes_for(n.target, n.inputs[0].type.dtype))(sch)
        ro, ri = sch.split(loops[read_axis], [None, TRANSPOSE_TILE])
        wo, wi = sch.split(loops[-1], [None, TRANSPOSE_TILE])
        outer = [l for k, l in enumerate(loops[:-1]) if k != read_axis] + [ro, wo]
        sch.reorder(*outer, ri, wi)
        sch.parallel(sch.fuse(*outer))
        sch.vectorize(wi)

    return make_kernel([x], [y], schedule, [0], f"{TRANSPOSE_TILE}x{TRANSPOSE_TILE} tiled transpose")


# -- gathers ----------------------------------------------------------------------------
def _wrapped_index(index, size: int):
    """ONNX negative indices count from the end; out-of-range ones are clamped so a bad
    run-time index cannot read outside the buffer."""
    from tvm import te

    i = index.astype("int32")
    return te.max(te.min(te.if_then_else(i < 0, i + size, i), size - 1), 0)


def _index_arg(n: LowerNode, i: int):
    """The placeholder and kernel argument of input i (a folded constant stays an argument)."""
    return n.placeholder(i), (n.inputs[i].data if n.inputs[i].is_constant else i)


@rule("Gather")
def gather_compute(n: LowerNode) -> Kernel:
    from tvm import te

    axis = n.attrs["axis"]
    data = n.placeholder(0)
    indices, index_arg = _index_arg(n, 1)
    k = len(indices.shape)
    size = n.inputs[0].type.shape[axis]

    def fn(*o):
        j = _wrapped_index(indices(*o[axis:axis + k]), size)
        return data(*o[:axis], j, *o[axis + k:])

    y = te.compute(n.outputs[0].shape, fn, name="gather")
    return make_kernel([data, indices], [y], schedule_injective(lanes_for(n.target, n.inputs[0].type.dtype)),
                       [0, index_arg], "injective gather")


@rule("GatherElements")
def gather_elements_compute(n: LowerNode) -> Kernel:
    from tvm import te

    axis = n.attrs["axis"]
    data = n.placeholder(0)
    indices, index_arg = _index_arg(n, 1)
    size = n.inputs[0].type.shape[axis]

    def fn(*o):
        j = _wrapped_index(indices(*o), size)
        return data(*o[:axis], j, *o[axis + 1:])

    y = te.compute(n.outputs[0].shape, fn, name="gather_elements")
    return make_kernel([data, indices], [y], schedule_injective(lanes_for(n.target, n.inputs[0].type.dtype)),
                       [0, index_arg], "injective gather")


# -- pad ----------------------------------------------------------------------------------
def _pad_source_index(j, size: int, mode: str):
    """Index into an axis of length `size` for padded position j (j - begin pad), numpy rules."""
    from tvm import te, tirx

    if mode == "edge":
        return te.max(te.min(j, size - 1), 0)
    if mode == "wrap":
        return tirx.floormod(j, size)
    if size == 1:  # reflect of a single element repeats it
        return tirx.const(0, "int32")
    m = tirx.floormod(j, 2 * (size - 1))  # reflect is periodic with period 2(size-1)
    return te.min(m, 2 * (size - 1) - m)


@rule("Pad")
def pad_compute(n: LowerNode) -> Kernel:
    """Crop (negative pads) then pad, like the reference; constant padding is a guarded
    load, the other modes map every output index into the cropped input."""
    from tvm import te, tirx

    x = n.placeholder(0)
    shape, rank, mode = n.inputs[0].type.shape, n.inputs[0].type.rank, n.attrs["mode"]
    begins, ends = n.attrs["pads"][:rank], n.attrs["pads"][rank:]
    crop_lo = [max(-b, 0) for b in begins]
    fill = np.dtype(n.inputs[0].type.dtype).type(n.attrs["value"]).item()  # numpy's conversion, as the reference
    cropped = [d - max(-b, 0) - max(-e, 0) for d, b, e in zip(shape, begins, ends)]

    def fn(*o):
        inside, src = [], []
        for a in range(rank):
            j = o[a] - max(begins[a], 0)
            padded = begins[a] > 0 or ends[a] > 0
            if padded and mode == "constant":
                inside.append(tirx.all(j >= 0, j < cropped[a]))
            elif padded:
                j = _pad_source_index(j, cropped[a], mode)
            src.append(j + crop_lo[a])
        value = x(*src)
        if not inside:
            return value
        return te.if_then_else(tirx.all(*inside), value, tirx.const(fill, x.dtype))

    y = te.compute(n.outputs[0].shape, fn, name="pad")
    return make_kernel([x], [y], schedule_injective(lanes_for(n.target, n.inputs[0].type.dtype)), [0],
                       f"injective {mode} pad")
