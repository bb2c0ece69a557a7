"""Structure of ONNX graphs: walking nested subgraphs, their free names, topological order."""
from __future__ import annotations

import heapq

from onnx import AttributeProto

from ..errors import ModelError


def subgraphs(node):
    """The GraphProtos held in a node's attributes (If branches, Loop bodies...)."""
    for attr in node.attribute:
        if attr.type == AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == AttributeProto.GRAPHS:
            yield from attr.graphs


def walk_nodes(graph):
    """Every node of `graph` and of its nested subgraphs, outer nodes first."""
    for node in graph.node:
        yield node
        for sub in subgraphs(node):
            yield from walk_nodes(sub)


def value_names(graph) -> set:
    """Every value name declared or produced in `graph` and its subgraphs."""
    names = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    names |= {v.name for v in graph.output}
    for node in graph.node:
        names.update(n for n in node.output if n)
        for sub in subgraphs(node):
            names |= value_names(sub)
    return names


def free_names(graph) -> set:
    """Names a subgraph reads from enclosing scopes (defined nowhere inside it)."""
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    used = {v.name for v in graph.output}
    for node in graph.node:
        defined.update(node.output)
        used.update(n for n in node.input if n)
        for sub in subgraphs(node):
            used |= free_names(sub)
    return used - defined


def node_inputs(node) -> list:
    """Names a node needs before it runs: its inputs and its subgraphs' outer-scope reads."""
    needed = [n for n in node.input if n]
    for sub in subgraphs(node):
        needed.extend(sorted(free_names(sub)))
    return needed


def toposort(nodes, defined, names) -> list:
    """The nodes in an order where every value is defined before use (stable).

    Args:
        nodes: NodeProtos, in file order.
        defined: names available before any node runs (inputs, initializers, outer scope).
        names: the IR name of each node, for error messages.
    Returns:
        (index, NodeProto) pairs in topological order.
    """
    producer = {}
    for i, node in enumerate(nodes):
        for out in node.output:
            if out and (out in producer or out in defined):
                raise ModelError(f"value {out!r} is defined twice (again by node {names[i]})")
            if out:
                producer[out] = i
    waiting_on, users = [0] * len(nodes), [[] for _ in nodes]
    for i, node in enumerate(nodes):
        for name in node_inputs(node):
            if name in defined:
                continue
            if name not in producer:
                raise ModelError(f"node {names[i]} ({node.op_type}) uses value {name!r}, "
                                 f"which no node, input or initializer defines")
            waiting_on[i] += 1
            users[producer[name]].append(i)
    ready = [i for i, count in enumerate(waiting_on) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append((i, nodes[i]))
        for user in users[i]:
            waiting_on[user] -= 1
            if waiting_on[user] == 0:
                heapq.heappush(ready, user)
    if len(order) != len(nodes):
        stuck = [names[i] for i, count in enumerate(waiting_on) if count]
        raise ModelError(f"the graph has a cycle through nodes {stuck[:10]}")
    return order
