"""Measuring candidate kernels on this machine, with results cached on disk.

The cache (`measurements.json` in nnforge.cache.cache_dir()) maps (op, attributes, input and output
types, constant-ness, target, rule) to seconds, so a schedule is timed once per machine.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from ..cache import cache_dir
from ..ir.types import random_array
from .kernel import LowerNode


def measurement_key(n: LowerNode, rule_name: str) -> str:
    desc = json.dumps([n.op, sorted(n.attrs.items()), [(str(i.type), i.is_constant) for i in n.inputs],
                       [str(t) for t in n.outputs], n.target.to_json(), rule_name, n.blocks, n.out_block],
                      default=str)
    return hashlib.sha256(desc.encode()).hexdigest()[:32]


def _cache_file() -> str:
    return os.path.join(cache_dir(), "measurements.json")


def _load() -> dict:
    try:
        with open(_cache_file()) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}


def _store(key: str, seconds: float):
    data = _load()
    data[key] = seconds
    tmp = _cache_file() + f".{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, _cache_file())  # atomic: concurrent compiles never see a torn file


def build_kernel(n: LowerNode, kernel):
    """The kernel compiled alone for the node's target, as a tvm Executable with entry "k"."""
    import tvm

    return tvm.compile(kernel.func.with_attr("global_symbol", "k"), target=n.target.tvm_target())


def kernel_tensors(n: LowerNode, kernel, dev, seed: int = 0) -> list:
    """The kernel's arguments on `dev`: constants as given, random run-time inputs, zeroed outputs
    (of the types the kernel reads and writes: Kernel.param_types)."""
    import tvm

    rng = np.random.default_rng(seed)
    args = []
    in_types, out_types = kernel.param_types(n)  # NCHW{b}c where the kernel reads/writes blocks
    for a in kernel.args:
        data = a if isinstance(a, np.ndarray) else n.inputs[a].data
        if data is None:
            data = random_array(in_types[a], rng)
        args.append(tvm.runtime.tensor(np.array(data, order="C"), dev))
    return args + [tvm.runtime.tensor(np.zeros(t.shape, t.dtype), dev) for t in out_types]


def time_kernel(n: LowerNode, kernel, number: int = 5, repeat: int = 3) -> float:
    """Compile `kernel` alone and return its median seconds on random inputs of the node's types."""
    import tvm

    dev = tvm.cpu()
    lib = build_kernel(n, kernel).mod
    return float(lib.time_evaluator("k", dev, number=number, repeat=repeat)(*kernel_tensors(n, kernel, dev)).median)


def record_seconds(n: LowerNode, rule_name: str, seconds: float):
    """Store a measurement made elsewhere (`nnforge bench`, over RPC) where `--measure` finds it."""
    _store(measurement_key(n, rule_name), seconds)


def measure_seconds(n: LowerNode, rule, kernel) -> float:
    """Seconds of `kernel` (rule `rule`) for node `n`: from the cache, else timed and cached."""
    key = measurement_key(n, rule.name)
    cached = _load().get(key)
    if cached is not None:
        return cached
    seconds = time_kernel(n, kernel)
    _store(key, seconds)
    return seconds
