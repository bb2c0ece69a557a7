"""nnforge's on-disk caches: compiled models and kernel measurements.

Both live under `cache_dir()`: $NNFORGE_CACHE_DIR, else ~/.cache/nnforge.
A compiled model is cached as an artifact directory (the same files `export` writes)
keyed by a hash of everything that determines the result: the model bytes, input
shapes, passes, schedule options, target, nnforge version and a hash of nnforge's source. Recompiling the same
model then loads that artifact instead of lowering and building again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile


def cache_dir() -> str:
    """$NNFORGE_CACHE_DIR, else ~/.cache/nnforge (created on demand)."""
    path = os.environ.get("NNFORGE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "nnforge")
    os.makedirs(path, exist_ok=True)
    return path


_SOURCE_DIGEST = None


def source_digest() -> str:
    """A hash of nnforge's own source files, so a cached model is never reused after the
    compiler changed (editable installs change without a version bump)."""
    global _SOURCE_DIGEST
    if _SOURCE_DIGEST is None:
        root = os.path.dirname(os.path.abspath(__file__))
        h = hashlib.sha256()
        for sub in ("", "frontend", "ir", "ir/ops", "passes", "passes/rewrite", "codegen"):
            folder = os.path.join(root, sub)
            for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
                if name.endswith(".py"):
                    with open(os.path.join(folder, name), "rb") as f:
                        h.update(name.encode() + f.read())
        _SOURCE_DIGEST = h.hexdigest()
    return _SOURCE_DIGEST


def model_key(model, input_shapes, passes, options, target_json: dict) -> str | None:
    """The cache key of a compile, or None when the model cannot be hashed (an ir.Graph, a
    missing file: those are compiled without the cache, and errors surface as usual)."""
    from . import __version__

    if isinstance(model, bytes):
        data = model
    elif isinstance(model, (str, os.PathLike)):
        try:
            with open(model, "rb") as f:
                data = f.read()
        except OSError:
            return None
    elif hasattr(model, "SerializeToString"):
        data = model.SerializeToString()
    else:
        return None
    h = hashlib.sha256(data)
    h.update(json.dumps([sorted((k, list(v)) for k, v in (input_shapes or {}).items()),
                         list(passes) if passes is not None else None, sorted(options.overrides.items()),
                         options.measure, target_json, __version__, source_digest()]).encode())
    return h.hexdigest()[:40]


def model_path(key: str) -> str:
    return os.path.join(cache_dir(), "models", key)


def store_model(compiled, key: str):
    """Export `compiled` into the cache under `key` (atomically: a half-written entry is never seen)."""
    final = model_path(key)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(final), prefix=".tmp-")
    try:
        compiled.export(tmp)
        os.replace(tmp, final)
    except OSError:  # another process stored the same key first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
