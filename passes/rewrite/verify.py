"""The rule verifier: a z3 proof and a numeric check per example, and the gate that
refuses to load a rule that fails either.

For each example of a rule: build its source pattern as a graph (or parse the
example's IR text), find the match, then
  (a) prove it: evaluate the graph and the rhs (with `let` run on z3 terms) under
      the operator axioms of symbolic.py and ask z3 whether any output element can
      differ (unsat = proved, for all real values at this shape);
  (b) test it: apply the rule with the real driver and compare the interpreter's
      outputs before/after on random inputs (rel err <= 1e-5).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ...errors import NnforgeError
from ...ir import Graph, TensorType, interpret, parse_graph
from .engine import GraphEmitter, Match, Sym, apply, find_matches
from .pattern import build
from .symbolic import SymEmitter, SymValue, equivalence_counterexample, evaluate, lift, symbolic

NUMERIC_RTOL = 1e-5


class UnsoundRuleError(NnforgeError):
    """A rule failed its proof or numeric check; the engine refuses to load it."""


@dataclass
class Verdict:
    """Outcome of verifying one rule."""

    rule: str
    ok: bool
    proof_s: float = 0.0
    numeric_s: float = 0.0
    examples: int = 0
    message: str = ""
    counterexample: dict = field(default_factory=dict)


def example_graph(rule, example, seed: int = 0):
    """(graph, {constant name: Sym}) for one example: an IR text graph, or the lhs built
    from the example's bindings (shape tuple = input, array = constant, Sym = symbolic
    constant; attribute variables take the given values)."""
    if isinstance(example, str):
        return parse_graph(example), {}
    rng = np.random.default_rng(seed)
    g, env, syms = Graph(rule.name), {}, {}

    def tensor(name, spec):
        if isinstance(spec, tuple):
            return g.add_input(name, TensorType("float32", spec))
        if isinstance(spec, Sym):
            data = (rng.uniform(0.5, 1.5, spec.shape) if spec.positive
                    else rng.standard_normal(spec.shape)).astype(np.float32)
            v = g.constant(data, name)
            syms[v.name] = spec
            return v
        return g.constant(np.asarray(spec), name)

    example = {**{n: {} for n, role in rule.roles.items() if role == "spread"}, **example}
    for name, spec in example.items():
        role = rule.roles.get(name)
        if role == "tensor":
            env[name] = tensor(name, spec)
        elif role == "star":
            env[name] = [tensor(f"{name}{i}", s) for i, s in enumerate(spec)]
        else:
            env[name] = spec
    g.set_outputs(build(rule.src, env, GraphEmitter(g, rule.name)))
    return g, syms


def _the_match(rule, g):
    outs = [v.name for v in g.outputs]
    for m in find_matches(g, rule):
        if [t.name for t in m.targets] == outs:
            return m
    return None


def _prove(rule, g, syms, m):
    """Counterexample dict, or None when z3 proves the rewrite at this example."""
    assumptions, env = [], {}
    for v in g.inputs:
        env[v.name] = symbolic(v.name, v.type.shape)
    for v in g.constants:
        spec = syms.get(v.name)
        env[v.name] = (symbolic(v.name, v.type.shape, spec.positive, assumptions) if spec
                       else lift(v.data))
    env = evaluate(g, env)

    def sym(x):
        if isinstance(x, list):
            return [sym(y) for y in x]
        return SymValue(x, env[x.name]) if hasattr(x, "producer") and hasattr(x, "type") else x

    sm = Match(rule, {k: sym(v) for k, v in m.items()}, m.nodes, m.targets)
    bindings = dict(sm)
    if rule.let:
        bindings.update(rule.let(sm))
    rhs = build(rule.dst, bindings, SymEmitter(env))
    return equivalence_counterexample([env[t.name] for t in m.targets], rhs, assumptions)


def _numeric(rule, g, m, seeds=(0, 1, 2)) -> str:
    """'' if the rewritten graph computes the same outputs, else what differs."""
    from ..manager import random_feeds

    new, _ = apply(g, m)
    for seed in seeds:
        feeds = random_feeds(g, seed)
        for i, (a, b) in enumerate(zip(interpret(g, feeds), interpret(new, feeds))):
            if a.shape != b.shape:
                return f"output {i}: shape {a.shape} became {b.shape}"
            err = float(np.max(np.abs(a.astype(np.float64) - b), initial=0.0))
            scale = max(float(np.max(np.abs(a), initial=0.0)), 1e-30)
            if err / scale > NUMERIC_RTOL:
                return f"output {i}: rel err {err / scale:.2e} on random inputs (seed {seed})"
    return ""


def verify_rule(rule) -> Verdict:
    """Prove and test `rule` on each of its examples; check it rejects its non-examples."""
    verdict = Verdict(rule.name, True)
    if not rule.examples:
        return Verdict(rule.name, False, message="has no examples, so nothing was proved")
    for k, example in enumerate(rule.examples):
        try:
            g, syms = example_graph(rule, example, seed=k)
        except Exception as e:  # noqa: BLE001
            return Verdict(rule.name, False, message=f"example {k} does not build: "
                                                     f"{type(e).__name__}: {e}")
        m = _the_match(rule, g)
        if m is None:
            return Verdict(rule.name, False, message=f"example {k} does not match its own pattern")
        t0 = time.time()
        try:
            cex = _prove(rule, g, syms, m)
        except Exception as e:  # noqa: BLE001  (any failure to prove is a refusal)
            return Verdict(rule.name, False, message=f"example {k}: no proof ({e})")
        verdict.proof_s += time.time() - t0
        if cex is not None:
            return Verdict(rule.name, False, message=f"example {k}: z3 found a counterexample",
                           counterexample=cex, proof_s=verdict.proof_s)
        t0 = time.time()
        problem = _numeric(rule, g, m)
        verdict.numeric_s += time.time() - t0
        if problem:
            return Verdict(rule.name, False, message=f"example {k}: numeric check failed: {problem}")
        verdict.examples += 1
    for k, example in enumerate(rule.non_examples):
        g, _ = example_graph(rule, example)
        if _the_match(rule, g) is not None:
            return Verdict(rule.name, False, message=f"non-example {k} is matched: precondition too weak")
    return verdict


_VERDICTS: dict = {}


def checked(rules) -> list:
    """The rules, each verified once per process; UnsoundRuleError names the first one
    that is not proved and tested, with z3's counterexample."""
    out = []
    for rule in rules:
        v = verdict_of(rule)
        if not v.ok:
            cex = f"; counterexample: {v.counterexample}" if v.counterexample else ""
            raise UnsoundRuleError(f"refusing to load rewrite rule {rule.name!r} ({rule.lhs} => "
                                   f"{rule.rhs}): {v.message}{cex}")
        out.append(rule)
    return out


def verdict_of(rule) -> Verdict:
    """The (cached) verdict of one rule."""
    key = (rule.name, rule.lhs, rule.rhs, rule.when, rule.let)
    if key not in _VERDICTS:
        _VERDICTS[key] = verify_rule(rule)
    return _VERDICTS[key]
