"""The nnforge graph IR: a DAG of Nodes over typed Values.

A Value is produced by exactly one Node, or is a graph input, or is a constant
(it then carries `data`, a read-only numpy array). Nodes are kept in
topological order. Passes never edit edges by hand: they build nodes with
`Graph.add_node` and redirect users with `Graph.replace_all_uses`.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..errors import NnforgeError, ShapeError
from .types import TensorType


class Value:
    """A typed SSA value. `data` is set for constants, `producer` for node outputs."""

    __slots__ = ("name", "type", "producer", "data")

    def __init__(self, name: str, type: TensorType, producer=None, data=None):
        self.name = name
        self.type = type
        self.producer = producer
        self.data = data

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    def __repr__(self):
        return f"%{self.name}: {self.type}"


class Node:
    """One operation: `outputs = op(inputs, **attrs)`."""

    __slots__ = ("op", "inputs", "outputs", "attrs", "name")

    def __init__(self, op: str, inputs, outputs, attrs, name: str):
        self.op = op
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.attrs = dict(attrs)
        self.name = name

    def __repr__(self):
        return f"<Node {self.name}: {self.op}>"


class Graph:
    """A static-shape dataflow graph.

    Args:
        name: a name for printing and for artifacts.
    """

    def __init__(self, name: str = "graph"):
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.nodes: list[Node] = []
        self._names: set[str] = set()
        self._counter = itertools.count()

    # -- building ---------------------------------------------------------
    def unique_name(self, base: str) -> str:
        """A value or node name not used yet in this graph, derived from `base`."""
        base = base or "v"
        name = base
        while name in self._names:
            name = f"{base}_{next(self._counter)}"
        self._names.add(name)
        return name

    def add_input(self, name: str, type: TensorType) -> Value:
        """Declare a run-time input."""
        if name in self._names:
            raise NnforgeError(f"duplicate value name {name!r}")
        self._names.add(name)
        value = Value(name, type)
        self.inputs.append(value)
        return value

    def constant(self, array, name: str = "const") -> Value:
        """A constant value holding `array` (copied unless it is already a read-only ndarray)."""
        data = array if isinstance(array, np.ndarray) and not array.flags.writeable else np.array(array)
        data.setflags(write=False)
        return Value(self.unique_name(name), TensorType.of(data), data=data)

    def add_node(self, op: str, inputs, attrs=None, name: str | None = None,
                 output_names=None) -> list[Value]:
        """Append a node; attributes are checked against the op's schema and
        output types inferred by the registry.

        Args:
            op: registered op name.
            inputs: list of Values (already in the graph).
            attrs: attribute dict (missing ones take the schema default).
            name: node name (made unique).
            output_names: optional names for the outputs.
        Returns:
            the node's output Values.
        """
        from .registry import get_op

        opdef = get_op(op)
        base = name or op.lower()
        attrs = opdef.check_attrs(attrs or {}, base)
        types = opdef.infer_types([v.type for v in inputs], attrs, base)
        names = output_names or [f"{base}_out{i}" if len(types) > 1 else base
                                 for i in range(len(types))]
        # outputs are named before the node so that they, the names printed, get `base` itself
        values = [Value(self.unique_name(n), t) for n, t in zip(names, types)]
        node = Node(op, inputs, values, attrs, self.unique_name(base))
        for v in values:
            v.producer = node
        self.nodes.append(node)
        return node.outputs

    def set_outputs(self, values):
        self.outputs = list(values)

    # -- queries ----------------------------------------------------------
    def users(self) -> dict:
        """Map value name -> list of nodes using it."""
        uses: dict[str, list[Node]] = {}
        for node in self.nodes:
            for v in node.inputs:
                uses.setdefault(v.name, []).append(node)
        return uses

    @property
    def constants(self) -> list[Value]:
        """Constant values used by nodes or outputs, each once, in first-use order."""
        seen, out = set(), []
        for v in itertools.chain((v for n in self.nodes for v in n.inputs), self.outputs):
            if v.is_constant and v.name not in seen:
                seen.add(v.name)
                out.append(v)
        return out

    def op_histogram(self) -> dict:
        hist: dict[str, int] = {}
        for node in self.nodes:
            hist[node.op] = hist.get(node.op, 0) + 1
        return dict(sorted(hist.items(), key=lambda kv: -kv[1]))

    # -- rewriting --------------------------------------------------------
    def replace_all_uses(self, old: Value, new: Value):
        """Make every user of `old` (nodes and graph outputs) use `new` instead."""
        if old.type != new.type:
            raise ShapeError(f"cannot replace %{old.name}: {old.type} with %{new.name}: {new.type}")
        for node in self.nodes:
            node.inputs = [new if v is old else v for v in node.inputs]
        self.outputs = [new if v is old else v for v in self.outputs]

    def remove_dead(self):
        """Drop nodes none of whose outputs reach a graph output."""
        live = {v.name for v in self.outputs}
        kept = []
        for node in reversed(self.nodes):
            if any(v.name in live for v in node.outputs):
                kept.append(node)
                live.update(v.name for v in node.inputs)
        self.nodes = kept[::-1]

    def toposort(self):
        """Reorder nodes topologically (stable); raises ShapeError on a cycle."""
        ready = {v.name for v in self.inputs}
        pending, ordered = list(self.nodes), []
        while pending:
            rest = []
            for node in pending:
                if all(v.is_constant or v.name in ready for v in node.inputs):
                    ordered.append(node)
                    ready.update(v.name for v in node.outputs)
                else:
                    rest.append(node)
            if len(rest) == len(pending):
                raise ShapeError(f"graph {self.name!r} has a cycle or an undefined value, at node "
                                 f"{rest[0].name} ({rest[0].op})")
            pending = rest
        self.nodes = ordered

    def copy(self) -> "Graph":
        """A structural copy (new Nodes and Values; constant arrays are shared, read-only)."""
        g = Graph(self.name)
        g._names = set(self._names)
        g._counter = itertools.count(next(self._counter))
        vmap: dict[int, Value] = {}

        def m(v: Value) -> Value:
            if id(v) not in vmap:
                vmap[id(v)] = Value(v.name, v.type, data=v.data)
            return vmap[id(v)]

        g.inputs = [m(v) for v in self.inputs]
        for node in self.nodes:
            new = Node(node.op, [m(v) for v in node.inputs], [], node.attrs, node.name)
            new.outputs = [m(v) for v in node.outputs]
            for v in new.outputs:
                v.producer = new
            g.nodes.append(new)
        g.outputs = [m(v) for v in self.outputs]
        return g

    def __str__(self):
        from .printer import print_graph

        return print_graph(self)
