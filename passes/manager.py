"""Passes and the PassManager.

A pass is a named, pure function Graph -> Graph (it never mutates its input).
The PassManager runs a list of them and can check after each one:
`verify=True` runs the IR verifier, `validate=True` runs translation validation
(interpret before and after on random inputs and compare). Tests turn both on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import NnforgeError

PASSES: dict = {}


@dataclass(frozen=True)
class Pass:
    name: str
    fn: Callable
    doc: str
    reads_files: bool = False  # its result depends on files besides the model (calibration data):
    # a compile running it cannot be cached under the pass name (driver.cacheable)

    def __call__(self, graph):
        return self.fn(graph)


def register_pass(name: str):
    """Register `fn(graph) -> graph` as a pass named `name` (kebab-case)."""
    def deco(fn):
        if name in PASSES:
            raise NnforgeError(f"pass {name} registered twice")
        PASSES[name] = Pass(name, fn, (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "")
        return fn
    return deco


PASS_FACTORIES: dict = {}  # prefix -> (argument -> Pass), for passes named "prefix:argument"


def register_pass_factory(prefix: str):
    """Register `factory(argument) -> Pass` for the parameterized passes "prefix:argument"
    (e.g. "prune:block:16x1:0.9"); the factory raises NnforgeError for a bad argument."""
    def deco(factory):
        PASS_FACTORIES[prefix] = factory
        return factory
    return deco


def get_pass(name: str) -> Pass:
    _load_passes()
    prefix, sep, argument = name.partition(":")
    if sep and prefix in PASS_FACTORIES:
        return PASS_FACTORIES[prefix](argument)
    if name not in PASSES:
        raise NnforgeError(f"unknown pass {name!r}; available: {sorted(PASSES)} "
                           f"and {', '.join(p + ':...' for p in sorted(PASS_FACTORIES))}")
    return PASSES[name]


def random_feeds(graph, seed: int = 0) -> dict:
    """Random inputs matching the graph's input types (see ir.types.random_array)."""
    from ..ir.types import random_array

    rng = np.random.default_rng(seed)
    return {v.name: random_array(v.type, rng) for v in graph.inputs}


def outputs_differ(a: np.ndarray, b: np.ndarray, rtol: float) -> bool:
    """True when b is not a's shape and dtype, or max |a - b| / max |a| > rtol (floats), or max |a - b| > rtol (other dtypes)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return True
    scale = max(float(np.max(np.abs(a), initial=0.0)), 1e-30) if a.dtype.kind == "f" else 1.0
    return bool(a.size) and float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) / scale > rtol


def validate_translation(before, after, name: str, rtol: float = 1e-4, seed: int = 0):
    """Interpret both graphs on the same random inputs; NnforgeError naming the pass and output if they differ."""
    from ..ir import interpret

    feeds = random_feeds(before, seed)
    for i, (a, b) in enumerate(zip(interpret(before, feeds), interpret(after, feeds))):
        if outputs_differ(a, b, rtol):
            raise NnforgeError(f"translation validation failed after pass {name}: output {i} "
                               f"({before.outputs[i].name}) differs")


class PassManager:
    """Runs passes in order.

    Args:
        passes: pass names or Pass objects.
        verify: run the IR verifier after each pass.
        validate: translation validation after each pass (slow on big graphs).
    """

    def __init__(self, passes, verify: bool = False, validate: bool = False):
        self.passes = [p if isinstance(p, Pass) else get_pass(p) for p in passes]
        self.verify = verify
        self.validate = validate
        self.timings: dict = {}

    def run(self, graph):
        from ..ir import verify

        for p in self.passes:
            t0 = time.time()
            new = p(graph)
            self.timings[p.name] = time.time() - t0
            if new is graph:
                raise NnforgeError(f"pass {p.name} returned its input graph; passes must be pure")
            if self.verify:
                verify(new)
            if self.validate:
                validate_translation(graph, new, p.name)
            graph = new
        return graph


def _load_passes():
    from . import cleanup, fuse, prune, quantize, rewrite  # noqa: F401  (register their passes)
