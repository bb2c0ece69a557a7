"""Strassen's algorithm over the tiled GEMM (rule `gemm-strassen`, family `strassen`).

`levels` = L recursion levels split A, B and C into a 2^L x 2^L grid of blocks
(block g = row * 2^L + col; sizes padded up to a multiple of 2^L with zeros) and
turn the product into 7^L block products, flattened into one batched GEMM:

    S[p] = sum_g U[p, g] A_g      # stage "strassen_a", run time
    T[p] = sum_g V[p, g] B_g      # at compile time when B is constant, else fused into packing
    P[p] = S[p] T[p]              # codegen/gemm.py's tiled product, batch 7^L
    C_g  = sum_p W[g, p] P[p]     # fused into the epilogue (alpha, beta*C)

U, V, W for L levels come from the one-level matrices (`strassen_coefficients`);
`strassen_reference` is their numpy definition. The stages select their block's
terms with Select chains over loops that are unrolled, so only the real terms are
read. Rounding error grows with the levels (each level adds and subtracts blocks).
"""
from __future__ import annotations

import numpy as np

from .gemm import matmul_view, pack_columns, pack_stage, plan_gemm, product_stage, schedule_product
from .kernel import Kernel, LowerNode
from .rules import make_kernel, rule

# one level, blocks (11, 12, 21, 22): M1 = (A11 + A22)(B11 + B22), M2 = (A21 + A22) B11, ...
U1 = np.array([[1, 0, 0, 1], [0, 0, 1, 1], [1, 0, 0, 0], [0, 0, 0, 1], [1, 1, 0, 0], [-1, 0, 1, 0], [0, 1, 0, -1]])
V1 = np.array([[1, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, -1], [-1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0], [0, 0, 1, 1]])
W1 = np.array([[1, 0, 0, 1, -1, 0, 1], [0, 0, 1, 0, 1, 0, 0], [0, 1, 0, 1, 0, 0, 0], [1, -1, 1, 0, 0, 1, 0]])
MIN_BLOCK = 64  # below this a block product is too small for the tiled GEMM to pay for the extra passes


def strassen_coefficients(levels: int):
    """U, V: [7^L, 4^L] (block combinations of A and B); W: [4^L, 7^L] (of the products).

    Level L's product p = pc * 7^(L-1) + pf is the one-level product pc of the coarse
    blocks, computed by L-1 levels (product pf) on their fine blocks.
    """
    u, v, w = U1, V1, W1
    for lvl in range(2, levels + 1):
        s, h = 1 << lvl, 1 << (lvl - 1)
        coarse = [(g // s // h) * 2 + (g % s) // h for g in range(s * s)]
        fine = [(g // s % h) * h + (g % s) % h for g in range(s * s)]
        u = np.stack([np.kron(U1[:, c], u[:, f]) for c, f in zip(coarse, fine)], axis=1)
        v = np.stack([np.kron(V1[:, c], v[:, f]) for c, f in zip(coarse, fine)], axis=1)
        w = np.stack([np.kron(W1[c], w[f]) for c, f in zip(coarse, fine)])
    return u, v, w


def _blocks(x: np.ndarray, s: int) -> np.ndarray:
    """[R, C] -> [s*s, R/s, C/s] blocks (R, C multiples of s)."""
    r, c = x.shape[0] // s, x.shape[1] // s
    return x.reshape(s, r, s, c).transpose(0, 2, 1, 3).reshape(s * s, r, c)


def strassen_reference(a: np.ndarray, b: np.ndarray, levels: int) -> np.ndarray:
    """A @ B by `levels` of Strassen in numpy (the definition the kernel follows)."""
    u, v, w = strassen_coefficients(levels)
    s = 1 << levels
    (m, k), n = a.shape, b.shape[1]
    mp, kp, np_ = (-(-x // s) * s for x in (m, k, n))
    ab = _blocks(np.pad(a, ((0, mp - m), (0, kp - k))), s)
    bb = _blocks(np.pad(b, ((0, kp - k), (0, np_ - n))), s)
    prods = np.einsum("pg,grk->prk", u, ab) @ np.einsum("pg,gkn->pkn", v, bb)
    c = np.einsum("gp,prn->grn", w, prods).reshape(s, s, mp // s, np_ // s)
    return c.transpose(0, 2, 1, 3).reshape(mp, np_)[:m, :n].astype(a.dtype)


def _combination(coefs, term):
    """sum_g coefs[g] * term(g) over the non-zero coefficients (a TE expression)."""
    terms = [(c, term(g)) for g, c in enumerate(coefs) if c]
    e = terms[0][1] if terms[0][0] > 0 else -terms[0][1]
    for c, t in terms[1:]:
        e = e + t if c > 0 else e - t
    return e


def _select(index, exprs):
    """exprs[index] as a Select chain; folds to one branch once `index`'s loop is unrolled."""
    from tvm import tirx

    e = exprs[-1]
    for i in range(len(exprs) - 2, -1, -1):
        e = tirx.Select(index == i, exprs[i], e)
    return e


def strassen_flops(m: int, k: int, n: int, levels: int, b_constant: bool) -> int:
    """FLOPs of the kernel: the 7^L block products plus the run-time block additions."""
    u, v, w = strassen_coefficients(levels)
    s = 1 << levels
    mh, kh, nh = (-(-x // s) for x in (m, k, n))
    adds = lambda x: int(np.sum(np.maximum((x != 0).sum(axis=1) - 1, 0)))  # noqa: E731
    flops = 2 * len(u) * mh * kh * nh + adds(u) * mh * kh + adds(w) * mh * nh
    return flops + (0 if b_constant else adds(v) * kh * nh)


def strassen_kernel(n: LowerNode, levels: int) -> Kernel | None:
    """`levels` of Strassen over the tiled GEMM for a float32 2-D Gemm/MatMul; None otherwise."""
    from tvm import te, tirx

    v = matmul_view(n)
    if v is None or v.batch != 1 or len(n.outputs[0].shape) != 2:
        return None
    s = 1 << levels
    mh, kh, nh = (-(-x // s) for x in (v.rows, v.k, v.cols))
    u_c, v_c, w_c = strassen_coefficients(levels)
    n_prod = len(u_c)
    p = plan_gemm(mh, nh, kh, n.target.vector_lanes, n.target.num_cores, n_prod)
    a = n.placeholder(0, "a")
    zero = tirx.const(0, "float32")

    def a_block(g, r, kk):  # element (r, kk) of A's block g, zero past the edges
        i, j = (g // s) * mh + r, (g % s) * kh + kk
        inside = tirx.all(i < v.rows, j < v.k)
        return tirx.if_then_else(inside, v.a_at(a, 0, tirx.min(i, v.rows - 1), tirx.min(j, v.k - 1)), zero)

    sa = te.compute((n_prod, mh, kh), lambda q, r, kk: _select(q, [
        _combination(u_c[i], lambda g: a_block(g, r, kk)) for i in range(n_prod)]), name="strassen_a")
    if n.inputs[1].is_constant:
        bmat = np.zeros((s * kh, s * nh), "float32")
        bmat[:v.k, :v.cols] = v.b_matrices(n.inputs[1].data)[0]
        t = np.einsum("pg,gkn->pkn", v_c.astype("float32"), _blocks(bmat, s))
        b_arg = pack_columns(t, p.bn, p.cols_padded)
        b_ph = pb = n.constant_placeholder(b_arg, "b_packed")
    else:
        b_ph, b_arg = n.placeholder(1, "b"), 1

        def b_block(g, kk, j):
            i, c = (g // s) * kh + kk, (g % s) * nh + j
            inside = tirx.all(i < v.k, c < v.cols)
            return tirx.if_then_else(inside, v.b_at(b_ph, 0, tirx.min(i, v.k - 1), tirx.min(c, v.cols - 1)), zero)
        pb = pack_stage(lambda q, kk, j: _select(q, [
            _combination(v_c[i], lambda g: b_block(g, kk, j)) for i in range(n_prod)]), n_prod, kh, nh, p, "float32")
    prod = product_stage(lambda q, r, kk: sa[q, r, kk], lambda q, jo, kk, ji: pb[q, jo, kk, ji], n_prod, mh, kh, p)

    def out_value(i, j):
        bi, bj, r, c = i // mh, j // nh, i % mh, j % nh
        value = _select(bi * s + bj, [_combination(w_c[g], lambda q: prod[q, r, c]) for g in range(s * s)])
        return v.epilogue(value, (i, j))

    out = te.compute(n.outputs[0].shape, out_value, name="epilogue")
    ins = [a, b_ph] + [ph for ph, _ in v.extra_inputs]
    args = [0, b_arg] + [i for _, i in v.extra_inputs]

    def schedule(sch):
        schedule_product(sch, p, pack=None if n.inputs[1].is_constant else "b_pack")
        if not n.inputs[1].is_constant:  # unroll the block loop so that the Select folds
            q = sch.get_loops(sch.get_sblock("b_pack"))[0]
            sch.unroll(q)
        q, r, kk = sch.get_loops(sch.get_sblock("strassen_a"))
        sch.unroll(q)
        sch.parallel(r)
        if kh % p.lanes == 0:
            sch.vectorize(sch.split(kk, [None, p.lanes])[1])
        i, j = sch.get_loops(sch.get_sblock("epilogue"))
        bi, r = sch.split(i, [None, mh])
        bj, c = sch.split(j, [None, nh])
        sch.reorder(bi, bj, r, c)
        sch.unroll(bi)
        sch.unroll(bj)
        sch.parallel(r)

    kernel = make_kernel(ins, [out], schedule, args,
                         f"strassen {levels} level{'s' if levels > 1 else ''}, {n_prod} products of "
                         f"{mh}x{kh}x{nh}: {p.describe()}")
    kernel.extra["flops"] = strassen_flops(v.rows, v.k, v.cols, levels, n.inputs[1].is_constant)
    return kernel


def strassen_levels(rows: int, k: int, cols: int) -> int:
    """Recursion levels for a product: as many as keep every block dimension >= MIN_BLOCK, at most 2."""
    levels = 0
    while levels < 2 and min(rows, k, cols) >> (levels + 1) >= MIN_BLOCK:
        levels += 1
    return levels


# Measured against the tiled GEMM (efficiency 0.8) on a 2-core AVX-512 Xeon, benchmarks/gemm.py:
# 0.75-0.91x of its speed up to 2048 (1 and 2 levels), 0.97x (1 level) to 1.03x (2 levels) at 2048
# and 4096, i.e. within noise. At 0.6 the cost model (FLOPs / efficiency) never prefers it:
# 7/8 and 49/64 of the FLOPs do not make up for 0.6/0.8. `strassen=on` forces it.
@rule("Gemm", "MatMul", name="gemm-strassen", family="strassen", efficiency=0.6)
def gemm_strassen(n: LowerNode) -> Kernel | None:
    """float32 2-D Gemm/MatMul by Strassen over the tiled GEMM (levels by `strassen_levels`)."""
    v = matmul_view(n)
    if v is None or v.batch != 1 or len(n.outputs[0].shape) != 2:
        return None
    levels = strassen_levels(v.rows, v.k, v.cols)
    return strassen_kernel(n, levels) if levels else None
