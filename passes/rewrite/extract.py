"""Extraction: the cheapest graph an e-graph holds, by the search's cost model, as an ir.Graph.

Summing per-class best costs (greedy, tree cost) pays twice for a node two classes share,
so it never picks a merged Q/K/V Gemm feeding a Split. As in Tensat, the choice is an
integer program: one 0/1 variable per e-node, minimize the sum of chosen e-nodes' costs
(a shared e-node is paid once), every output class and every child class of a chosen
e-node must have a chosen e-node. Cycles (x = Concat(Split(x)#0, Split(x)#1)) are cut
lazily: a solution with a cycle gets a constraint forbidding that cycle, and is solved
again. HiGHS (scipy.optimize.milp) solves it; the greedy tree-cost extraction is the
fallback when the solver runs out of time.
"""
from __future__ import annotations

import time

import numpy as np

from ...ir import Graph
from .cost import op_seconds
from .egraph import CONST, GET, INPUT, EGraph


def enode_seconds(eg: EGraph, enode: tuple, cid: int) -> float:
    """Cost of one e-node: 0 for leaves, projections and constant-only work (folded)."""
    op, key, kids = enode
    if op.startswith("$") or all(eg.find(k) in eg.consts for k in kids):
        return 0.0
    outs = eg.types[cid]
    return op_seconds(op, [eg.types[eg.find(k)] for k in kids],
                      list(outs) if isinstance(outs, tuple) else [outs], eg.attrs[key])


def candidates(eg: EGraph, roots) -> dict:
    """class -> [(e-node, seconds)] over classes reachable from `roots`; constant classes
    offer only their `$const`, and an e-node using its own class is left out."""
    out, todo = {}, [eg.find(r) for r in roots]
    while todo:
        cid = todo.pop()
        if cid in out:
            continue
        nodes = [n for n in eg.classes[cid] if n[0] == CONST] if cid in eg.consts else [
            n for n in eg.classes[cid] if cid not in n[2]]
        out[cid] = [(n, enode_seconds(eg, n, cid)) for n in nodes]
        todo.extend(k for n in nodes for k in n[2] if k not in out)
    return out


def greedy(eg: EGraph, cands: dict) -> dict:
    """class -> e-node minimizing tree cost (Bellman-Ford style fixpoint; always acyclic)."""
    best: dict = {}
    changed = True
    while changed:
        changed = False
        for cid, nodes in cands.items():
            for n, sec in nodes:
                if all(k in best for k in n[2]):
                    total = sec + sum(best[k][1] for k in n[2])
                    if cid not in best or total < best[cid][1] - 1e-15:
                        best[cid], changed = (n, total), True
    return {cid: n for cid, (n, _) in best.items()}


def _cycle(choice: dict, roots) -> list:
    """The (class, e-node) pairs of one cycle among the chosen e-nodes, or []."""
    state, stack = {}, []

    def visit(cid):
        state[cid] = 1
        stack.append(cid)
        for k in choice[cid][2]:
            if state.get(k) == 1:
                return stack[stack.index(k):]
            if k not in state:
                found = visit(k)
                if found:
                    return found
        state[cid] = 2
        stack.pop()
        return []

    for r in roots:
        if r not in state:
            found = visit(r)
            if found:
                return [(c, choice[c]) for c in found]
    return []


def ilp(eg: EGraph, cands: dict, roots, seconds: float):
    """class -> e-node of a minimum-cost acyclic selection, or None if not solved in time."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    var = {}
    for cid, nodes in cands.items():
        for n, sec in nodes:
            var[(cid, n)] = (len(var), sec)
    of_class = {cid: [var[(cid, n)][0] for n, _ in nodes] for cid, nodes in cands.items()}
    rows, cols, vals, lo = [], [], [], []

    def row(entries, bound):
        r = len(lo)
        for c, v in entries:
            rows.append(r), cols.append(c), vals.append(v)
        lo.append(bound)

    for r in set(roots):
        row([(j, 1) for j in of_class[r]], 1)
    for (cid, n), (i, _) in var.items():
        for k in set(n[2]):
            row([(j, 1) for j in of_class[k]] + [(i, -1)], 0)
    cost = np.array([sec * 1e6 for _, sec in var.values()])
    t0 = time.time()
    while time.time() - t0 < seconds:
        a = coo_matrix((vals, (rows, cols)), shape=(len(lo), len(var)))
        res = milp(cost, constraints=LinearConstraint(a, np.array(lo, float), np.inf),
                   integrality=np.ones(len(var)), bounds=Bounds(0, 1),
                   options={"time_limit": max(seconds - (time.time() - t0), 0.1)})
        if res.x is None:
            return None
        chosen = {}
        for (cid, n), (i, sec) in var.items():
            if res.x[i] > 0.5 and (cid not in chosen or sec < chosen[cid][1]):
                chosen[cid] = (n, sec)
        choice = {cid: n for cid, (n, _) in chosen.items()}
        cycle = _cycle(choice, [eg.find(r) for r in roots])
        if not cycle:
            return choice
        row([(var[(c, n)][0], -1) for c, n in cycle], 1 - len(cycle))  # not all of this cycle
    return None


def prefer_input(eg: EGraph, choice: dict, cands: dict, roots) -> dict:
    """Where a class's chosen e-node is rule-made but the input's own e-node there costs no
    more and reads only classes already computed, keep the input's: a rewrite the cost model
    cannot tell apart from the original (a flattened DenseNet concat) is left out."""
    roots = [eg.find(r) for r in roots]
    for cid, chosen in list(choice.items()):
        cost = dict(cands.get(cid, ()))
        if not eg.origin.get(chosen, ("",))[0] or chosen not in cost:
            continue
        for n, sec in cands[cid]:
            if (not eg.origin.get(n, ("x",))[0] and sec <= cost[chosen]
                    and all(eg.find(k) in choice for k in n[2])):
                trial = {**choice, cid: n}
                if not _cycle(trial, roots):
                    choice = trial
                    break
    return choice


def extract(eg: EGraph, roots, seconds: float = 5.0):
    """(class -> e-node, method) of the cheapest graph computing `roots`: "ilp" or "greedy"."""
    cands = candidates(eg, roots)
    choice = ilp(eg, cands, roots, seconds)
    method = "ilp" if choice is not None else "greedy"
    return prefer_input(eg, choice if choice is not None else greedy(eg, cands), cands, roots), method


def to_graph(eg: EGraph, choice: dict, roots, original):
    """Build the chosen e-nodes as an ir.Graph with `original`'s inputs.

    Returns:
        (graph, {node name: rule that made its e-node ("" for the input's own)},
         {value name: class id}).
    """
    g = Graph(original.name)
    values = {eg.find(eg.memo[eg.canon((INPUT, v.name, ()))]): g.add_input(v.name, v.type)
              for v in original.inputs}
    made_by, class_of = {}, {}

    def emit(root):
        stack = [root]
        while stack:
            cid = stack[-1]
            if cid in values:
                stack.pop()
                continue
            op, key, kids = choice[cid]
            kids = [eg.find(k) for k in kids]
            todo = [k for k in kids if k not in values]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            rule, hint, _ = eg.origin.get(choice[cid], ("", op.lower(), -1))
            if op == CONST:
                values[cid] = g.constant(eg.consts[cid], hint)
            elif op == GET:
                values[cid] = values[kids[0]][key]
            else:
                outs = g.add_node(op, [values[k] for k in kids], eg.attrs[key], name=hint)
                values[cid] = outs if isinstance(eg.types[cid], tuple) else outs[0]
                made_by[outs[0].producer.name] = rule
            if not isinstance(values[cid], list):
                class_of[values[cid].name] = cid

    roots = [eg.find(r) for r in roots]
    for r in roots:
        emit(r)
    g.set_outputs([values[r] for r in roots])
    return g, made_by, class_of
