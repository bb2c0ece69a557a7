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
                       [str(t) for t in n.outputs], n.target.to_json(), rule_name], default=str)
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


def time_kernel(n: LowerNode, kernel, number: int = 5, repeat: int = 3) -> float:
    """Compile `kernel` alone and return its median seconds on random inputs of the node's types."""
    import tvm

    rng = np.random.default_rng(0)
    dev = tvm.cpu()
    lib = tvm.compile(kernel.func.with_attr("global_symbol", "k"), target=n.target.tvm_target()).mod
    args = []
    for a in kernel.args:
        data = a if isinstance(a, np.ndarray) else n.inputs[a].data
        if data is None:
            data = random_array(n.inputs[a].type, rng)
        args.append(tvm.runtime.tensor(np.array(data, order="C"), dev))
    args += [tvm.runtime.tensor(np.zeros(t.shape, t.dtype), dev) for t in n.outputs]
    return float(lib.time_evaluator("k", dev, number=number, repeat=repeat)(*args).median)


def measure_seconds(n: LowerNode, rule, kernel) -> float:
    """Seconds of `kernel` (rule `rule`) for node `n`: from the cache, else timed and cached."""
    key = measurement_key(n, rule.name)
    cached = _load().get(key)
    if cached is not None:
        return cached
    seconds = time_kernel(n, kernel)
    _store(key, seconds)
    return seconds
