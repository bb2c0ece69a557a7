"""Unstructured (magnitude) and block pruning of constant weights: zeros in, same shapes out.

Every Conv, Gemm and MatMul whose weight is a float constant is seen as a matrix W[out, in]
(a Conv's [M, C/group * kH * kW], Gemm's B transposed unless transB, MatMul's 2-D B
transposed); its `rows x cols` blocks with the smallest L1 norms are set to zero, `ratio` of
them per layer. A weight whose matrix the block does not tile is left dense (and named in
the report). Codegen then stores sufficiently sparse weights block-sparse (codegen/sparse.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import NnforgeError


@dataclass(frozen=True)
class WeightView:
    """How a node's constant weight (node input `index`) reads as a matrix W[out, in]."""

    index: int
    to_matrix: object  # array -> W[out, in]
    from_matrix: object  # W[out, in] -> array of the weight's shape


def weight_view(node) -> WeightView | None:
    """The node's weight as W[out, in], or None when it has no float constant weight."""
    if node.op not in ("Conv", "Gemm", "MatMul") or len(node.inputs) < 2:
        return None
    w = node.inputs[1]
    if not w.is_constant or w.type.dtype not in ("float32", "float64", "float16"):
        return None
    shape = w.type.shape
    if node.op == "Conv":
        return WeightView(1, lambda a: a.reshape(shape[0], -1), lambda m: m.reshape(shape))
    if len(shape) != 2:
        return None
    if node.op == "Gemm" and node.attrs["transB"]:
        return WeightView(1, lambda a: a, lambda m: m)
    return WeightView(1, lambda a: a.T, lambda m: np.ascontiguousarray(m.T))


def prune_blocks(w: np.ndarray, block: tuple, ratio: float) -> np.ndarray:
    """W[out, in] with the `ratio` fraction of its `block` blocks of least L1 norm set to zero.

    Args:
        w: the matrix; `block` must tile it.
        block: (rows, cols).
        ratio: fraction of blocks zeroed (rounded to the nearest count).
    Returns:
        a new array.
    """
    (o, i), (br, bc) = w.shape, block
    norms = np.abs(w).reshape(o // br, br, i // bc, bc).sum(axis=(1, 3))
    drop = int(round(ratio * norms.size))
    keep = np.ones(norms.size, bool)
    keep[np.argsort(norms, axis=None, kind="stable")[:drop]] = False
    mask = np.repeat(np.repeat(keep.reshape(norms.shape), br, axis=0), bc, axis=1)
    return np.where(mask, w, 0).astype(w.dtype)


def prune_weights(graph, block: tuple, ratio: float):
    """A copy of `graph` with every weight block-pruned (module doc).

    Returns:
        (graph, skipped): the new graph and the names of the nodes whose weight the block does not tile.
    """
    g = graph.copy()
    weights = {}  # name -> (value, view, node name); a weight shared by several nodes is pruned once
    for node in g.nodes:
        view = weight_view(node)
        if view is not None:
            weights.setdefault(node.inputs[view.index].name, (node.inputs[view.index], view, node.name))
    skipped = []
    for w, view, node_name in weights.values():
        m = view.to_matrix(w.data)
        if m.shape[0] % block[0] or m.shape[1] % block[1]:
            skipped.append(node_name)
            continue
        g.replace_all_uses(w, g.constant(view.from_matrix(prune_blocks(m, block, ratio)), w.name))
    if weights and len(skipped) == len(weights):
        shapes = ", ".join(f"{name} {view.to_matrix(w.data).shape}" for w, view, name in list(weights.values())[:4])
        raise NnforgeError(f"block pruning: {block[0]}x{block[1]} blocks tile no weight of graph {graph.name!r} "
                           f"(weights as [out, in]: {shapes}{', ...' if len(weights) > 4 else ''})")
    return g, skipped
