"""Channel pruning: which output channels of which convs to remove (`plan_channels`), and the
graph with those channels physically removed (`remove_channels`).

Every 4-D value is described by its channel segments: runs of axis-1 channels that come
from one "channel space" (the output channels of a conv). Channel-wise ops (BatchNorm,
activations, pools, depthwise convs, per-channel constants) pass segments on, Concat
joins them, and an elementwise op between two 4-D tensors (a residual Add) unifies their
spaces, so the convs feeding a residual chain are pruned with one shared choice of
channels. A space is removable only if every tensor it reaches ends in a consumer that can
drop input channels: a Conv (its weight's input channels), Gemm/MatMul behind a global
pool and a flattening Reshape (B's rows), or another channel-wise op. Spaces that reach a graph output or any other
op (Reshape, LRN, Softmax, a non-constant operand...) are kept whole.

Criteria: "l1" ranks a space's channels by the L1 norms of their filters, summed over the
convs of the space, and removes `ratio` of each space's channels (Li et al., ICLR 2017);
"slimming" ranks them by |gamma| of the BatchNorm after each conv (averaged over the
space) and removes the `ratio` fraction of all such channels below one global threshold
(Liu et al., ICCV 2017), keeping at least MIN_KEEP of every space. Convs without a
BatchNorm after them are not pruned by "slimming".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...errors import NnforgeError

CHANNELWISE = {"Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu",
               "Selu", "Softplus", "Identity", "MaxPool", "AveragePool", "GlobalAveragePool",
               "GlobalMaxPool"}
ELEMENTWISE_BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min"}
MIN_KEEP = 0.1  # "slimming" keeps at least this fraction of every space (and at least one channel)


class _UnionFind:
    def __init__(self):
        self.parent: list[int] = []

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int):
        self.parent[self.find(a)] = self.find(b)


@dataclass
class ChannelPlan:
    """The channels kept, per channel space and per conv.

    segments: value name -> [(space or None, channels)] along axis 1 (None: not prunable here).
    prunable: space root -> the convs producing it, for the spaces that may lose channels.
    keep: space root -> sorted kept channel indices (only spaces that lose channels).
    conv_keep: Conv node name -> kept output channels (the convs whose outputs shrink).
    """

    spaces: _UnionFind
    segments: dict
    prunable: dict = field(default_factory=dict)
    keep: dict = field(default_factory=dict)
    conv_keep: dict = field(default_factory=dict)

    def kept_channels(self, value_name: str) -> np.ndarray | None:
        """Indices of the original axis-1 channels of a value that remain; None when all do."""
        segs = self.segments.get(value_name)
        if not segs or not any(s is not None and self.spaces.find(s) in self.keep for s, _ in segs):
            return None
        parts, start = [], 0
        for space, size in segs:
            root = None if space is None else self.spaces.find(space)
            parts.append(start + (self.keep[root] if root in self.keep else np.arange(size)))
            start += size
        return np.concatenate(parts)


def is_depthwise(node) -> bool:
    c, m = node.inputs[0].type.shape[1], node.inputs[1].type.shape[0]
    return node.attrs["group"] == c == m > 1


def _per_channel_constant(v, channels: int, out_type) -> bool:
    """A constant that broadcasts along axis 1 of a rank-4 output without growing it."""
    if not v.is_constant or v.type.rank > 4:
        return False
    shape = (1,) * (4 - v.type.rank) + v.type.shape
    return shape[0] == 1 and shape[1] in (1, channels) and all(d == 1 or d == o for d, o in zip(shape[2:], out_type.shape[2:]))


class _Analysis:
    """Walk the graph once, giving every 4-D value its segments (see module doc)."""

    def __init__(self, graph):
        self.graph = graph
        self.spaces = _UnionFind()
        self.segments: dict = {}
        self.blocked: list[int] = []
        self.producers: dict = {}  # space -> conv node

    def block(self, value):
        self.blocked.extend(s for s, _ in self.segments.get(value.name, []) if s is not None)

    def run(self) -> ChannelPlan:
        for node in self.graph.nodes:
            handler = getattr(self, f"_{node.op}", None)
            structured = [v for v in node.inputs if v.name in self.segments]
            if node.op in CHANNELWISE or node.op == "BatchNormalization":
                handler = self._channelwise
            elif node.op in ELEMENTWISE_BINARY:
                handler = self._binary
            if len(node.outputs) > 1:  # MaxPool indices...: a second output would keep the old channels
                handler = None
            if handler is None or not handler(node):
                for v in structured:  # an op that cannot drop channels keeps its inputs whole
                    self.block(v)
        for v in self.graph.outputs:
            self.block(v)
        blocked = {self.spaces.find(s) for s in self.blocked}
        plan = ChannelPlan(self.spaces, self.segments)
        for space, conv in self.producers.items():
            root = self.spaces.find(space)
            if root not in blocked:
                plan.prunable.setdefault(root, []).append(conv)
        return plan

    def _Conv(self, node) -> bool:
        x, w, out = node.inputs[0], node.inputs[1], node.outputs[0]
        if not w.is_constant or any(not v.is_constant for v in node.inputs[2:3]):
            return False
        if is_depthwise(node):
            if x.name in self.segments:
                self.segments[out.name] = self.segments[x.name]
        elif node.attrs["group"] == 1:
            space = self.spaces.new()
            self.producers[space] = node
            self.segments[out.name] = [(space, out.type.shape[1])]
        elif x.name in self.segments:
            return False
        residual = node.inputs[3] if len(node.inputs) > 3 else None  # a fused residual Add
        if residual is not None and not self._unify(out, residual):
            self.block(residual)
            self.block(out)
        return True

    def _channelwise(self, node) -> bool:
        x = node.inputs[0]
        if x.type.rank != 4 or any(not v.is_constant for v in node.inputs[1:]):
            return False
        if node.op != "BatchNormalization" and not all(  # Clip bounds, PRelu slopes
                _per_channel_constant(v, x.type.shape[1], x.type) for v in node.inputs[1:]):
            return False
        if x.name in self.segments:
            self.segments[node.outputs[0].name] = self.segments[x.name]
        return True

    def _unify(self, a, b) -> bool:
        sa, sb = self.segments.get(a.name), self.segments.get(b.name)
        if sa is None or sb is None or [n for _, n in sa] != [n for _, n in sb]:
            return False
        for (x, _), (y, _) in zip(sa, sb):
            if x is None or y is None:
                self.blocked.extend(s for s in (x, y) if s is not None)
            else:
                self.spaces.union(x, y)
        return True

    def _binary(self, node) -> bool:
        out = node.outputs[0]
        a, b = node.inputs
        if out.type.rank != 4:
            return False
        if a.type == b.type == out.type:
            if a.name not in self.segments and b.name not in self.segments:
                return True
            if not self._unify(a, b):
                return False
            self.segments[out.name] = self.segments[a.name]
            return True
        for x, c in ((a, b), (b, a)):
            if x.type == out.type and _per_channel_constant(c, out.type.shape[1], out.type):
                if x.name in self.segments:
                    self.segments[out.name] = self.segments[x.name]
                return True
        return False

    def _Concat(self, node) -> bool:
        if node.outputs[0].type.rank != 4 or node.attrs["axis"] not in (1, -3):
            return False
        segs = [s for v in node.inputs for s in self.segments.get(v.name, [(None, v.type.shape[1])])]
        self.segments[node.outputs[0].name] = segs
        return True

    def _Reshape(self, node) -> bool:
        """[N, C, 1, 1] -> [N, C] (a Flatten after a global pool) keeps the channels on axis 1."""
        x = node.inputs[0]
        if x.type.rank != 4 or x.type.shape[2:] != (1, 1) or node.outputs[0].type.shape != x.type.shape[:2]:
            return False
        if x.name in self.segments:
            self.segments[node.outputs[0].name] = self.segments[x.name]
        return True

    def _Gemm(self, node) -> bool:
        return not node.attrs["transA"] and node.inputs[1].is_constant

    def _MatMul(self, node) -> bool:
        return node.inputs[0].type.rank == 2 and node.inputs[1].is_constant and node.inputs[1].type.rank == 2


def _bn_gamma(graph, conv) -> np.ndarray | None:
    """|gamma| of the BatchNormalization that is the only user of the conv's output, if any."""
    users = graph.users().get(conv.outputs[0].name, [])
    if len(users) == 1 and users[0].op == "BatchNormalization" and users[0].inputs[1].is_constant:
        return np.abs(users[0].inputs[1].data.astype(np.float64))
    return None


def plan_channels(graph, criterion: str, ratio: float) -> ChannelPlan:
    """Decide which channels to remove (module doc).

    Args:
        graph: the ir.Graph (before BatchNorm folding, for "slimming").
        criterion: "l1" or "slimming".
        ratio: fraction of channels removed.
    Returns:
        the ChannelPlan.
    """
    plan = _Analysis(graph).run()
    scores = {}
    for root, convs in plan.prunable.items():
        if criterion == "l1":
            scores[root] = sum(np.abs(c.inputs[1].data.astype(np.float64)).reshape(len(c.inputs[1].data), -1).sum(1)
                               for c in convs)
        else:
            gammas = [_bn_gamma(graph, c) for c in convs]
            if all(g is not None for g in gammas):
                scores[root] = np.mean(gammas, axis=0)
    if not scores:
        raise NnforgeError(f"channel pruning ({criterion}): no conv output channels can be removed in graph "
                           f"{graph.name!r}: every conv output reaches a graph output or an op that cannot drop "
                           f"channels" + (" or has no BatchNormalization after it (slimming ranks by its gamma)"
                                          if criterion == "slimming" else ""))
    if criterion == "l1":
        drops = {root: int(round(ratio * len(s))) for root, s in scores.items()}
    else:
        drops = _global_drops(scores, ratio)
    for root, drop in drops.items():
        drop = min(drop, len(scores[root]) - 1)
        if drop > 0:
            plan.keep[root] = np.sort(np.argsort(scores[root], kind="stable")[drop:])
    for root, convs in plan.prunable.items():
        for c in convs:
            if root in plan.keep:
                plan.conv_keep[c.name] = plan.keep[root]
    return plan


def _global_drops(scores: dict, ratio: float) -> dict:
    """Channels to drop per space: the `ratio` lowest scores over all spaces, at most
    (1 - MIN_KEEP) of each space."""
    pooled = sorted((s, root) for root, ss in scores.items() for s in ss)
    drops = dict.fromkeys(scores, 0)
    for _, root in pooled[:int(round(ratio * len(pooled)))]:
        drops[root] += 1
    return {root: min(d, len(scores[root]) - max(1, math.ceil(MIN_KEEP * len(scores[root]))))
            for root, d in drops.items()}
