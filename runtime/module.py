"""A compiled model: run it, export it, load it back.

This module is what a deployment needs. It imports only numpy and tvm.runtime,
never onnx or nnforge's frontend, passes or codegen (tested in a fresh process).

Artifact layout (a directory):
    model.so        the compiled library (Relax VM executable + kernels)
    params.npz      weights, loaded without pickle
    manifest.json   nnforge version, target, inputs/outputs, sha256 of the two files
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np

from ..errors import ArtifactError, InputError

FORMAT = 1
LIB_FILE, PARAMS_FILE, MANIFEST_FILE = "model.so", "params.npz", "manifest.json"


def _version() -> str:
    from .. import __version__

    return __version__


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _contiguous(a: np.ndarray) -> np.ndarray:
    """`a` in C order (np.ascontiguousarray would turn a 0-d array into a 1-d one)."""
    return a if a.flags.c_contiguous else a.copy()


def check_feeds(inputs, feeds: dict) -> list:
    """The feeds as numpy arrays in the order of `inputs` ([(name, shape, dtype)]); InputError on a
    missing, unknown or mistyped feed."""
    names = [n for n, _, _ in inputs]
    extra = sorted(set(feeds) - set(names))
    if extra:
        raise InputError(f"unknown input(s) {extra}; the model's inputs are {names}")
    arrays = []
    for name, shape, dtype in inputs:
        if name not in feeds:
            raise InputError(f"missing input {name!r}; the model's inputs are {names}")
        a = np.asarray(feeds[name])
        if a.dtype != np.dtype(dtype) or a.shape != tuple(shape):
            raise InputError(f"input {name!r}: expected {dtype}{list(shape)}, got {a.dtype}{list(a.shape)}")
        arrays.append(a)
    return arrays


def target_device(target: dict):
    """The tvm device a model compiled for `target` (its manifest dict) runs on; ArtifactError
    when this machine has none (a CUDA model without an NVIDIA GPU and driver)."""
    import tvm.runtime

    if target.get("kind") != "cuda":
        return tvm.runtime.cpu(0)
    if not (tvm.runtime.enabled("cuda") and tvm.runtime.cuda(0).exist):
        raise ArtifactError(f"this model was compiled for CUDA ({target.get('arch')}) and needs an NVIDIA "
                            f"GPU with its driver; none is available on this machine (compile with "
                            f"target='cpu' to run here)")
    return tvm.runtime.cuda(0)


class CompiledModel:
    """A model ready to run on the CPU.

    Made by `nnforge.compile` (then `executable` is the tvm Executable, exportable) or by
    `nnforge.load` (from an artifact directory).
    """

    def __init__(self, module, params, inputs, outputs, target: dict, executable=None, report=None,
                 library: str | None = None):
        self._module = module
        self._session = None  # (device, vm, params on the device): made on first use
        self._params_np = list(params)
        self.inputs = [(n, tuple(s), d) for n, s, d in inputs]  # (name, shape, dtype)
        self.outputs = [(n, tuple(s), d) for n, s, d in outputs]
        self.target = target
        self.executable = executable
        self.library = library  # the .so this model was loaded from, if any
        self.report = report or []  # per node: {"node", "op", "kernel", "schedule", "rule", ...}

    def run(self, feeds: dict) -> list:
        """Run the model.

        Args:
            feeds: input name -> numpy array (exact shape and dtype of the model input).
        Returns:
            list of numpy arrays, in graph output order.
        """
        _, vm, params = self._device_session()
        res = vm["main"](*self._feed_tensors(feeds), *params)
        return [res[i].numpy() for i in range(len(self.outputs))]

    def _feed_tensors(self, feeds: dict) -> list:
        """The feeds as tvm tensors in input order; InputError on a missing, unknown or mistyped feed."""
        import tvm.runtime

        dev = self._device_session()[0]
        return [tvm.runtime.tensor(_contiguous(a), dev) for a in check_feeds(self.inputs, feeds)]

    def _device_session(self):
        """(device, VirtualMachine, params on the device), made on first use, so that a model
        compiled for a GPU on a machine without one can still be exported."""
        if self._session is None:
            import tvm.runtime
            from tvm.runtime.vm import VirtualMachine

            dev = target_device(self.target)
            self._session = (dev, VirtualMachine(self._module, dev),
                             [tvm.runtime.tensor(_contiguous(p), dev) for p in self._params_np])
        return self._session

    def time(self, feeds: dict, number: int = 10, repeat: int = 5) -> list:
        """Seconds per run, one entry per repeat (each the mean of `number` runs)."""
        args = self._feed_tensors(feeds)
        dev, vm, params = self._device_session()
        f = vm.time_evaluator("main", dev, number=number, repeat=repeat)
        return list(f(*args, *params).results)

    def export(self, path: str) -> str:
        """Write the artifact directory `path` (created if needed); returns the path.
        A model loaded from an artifact (or the compile cache) is exported by copying its library."""
        os.makedirs(path, exist_ok=True)
        lib, params = os.path.join(path, LIB_FILE), os.path.join(path, PARAMS_FILE)
        if self.executable is not None:
            self.executable.export_library(lib)
        elif os.path.abspath(self.library) != os.path.abspath(lib):
            shutil.copyfile(self.library, lib)
        np.savez(params, **{f"p{i}": p for i, p in enumerate(self._params_np)})
        manifest = {
            "format": FORMAT,
            "nnforge_version": _version(),
            "target": self.target,
            "inputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in self.inputs],
            "outputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in self.outputs],
            "num_params": len(self._params_np),
            "kernels": self.report,
            "files": {LIB_FILE: _sha256(lib), PARAMS_FILE: _sha256(params)},
        }
        with open(os.path.join(path, MANIFEST_FILE), "w") as f:
            json.dump(manifest, f, indent=2)
        return path


def load(path: str) -> CompiledModel:
    """Load an artifact directory written by `CompiledModel.export`.

    Refuses (ArtifactError) a missing file, a checksum mismatch, or another nnforge
    version or artifact format.
    """
    import tvm.runtime

    mpath = os.path.join(path, MANIFEST_FILE)
    try:
        with open(mpath) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no {MANIFEST_FILE}; not an nnforge artifact") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{mpath}: unreadable manifest ({e})") from None
    if manifest.get("format") != FORMAT or manifest.get("nnforge_version") != _version():
        raise ArtifactError(f"{path} was written by nnforge {manifest.get('nnforge_version')} "
                            f"(format {manifest.get('format')}); this is nnforge {_version()} "
                            f"(format {FORMAT}): recompile the model")
    for name, digest in manifest["files"].items():
        fpath = os.path.join(path, name)
        if not os.path.exists(fpath):
            raise ArtifactError(f"{path}: {name} is missing")
        if _sha256(fpath) != digest:
            raise ArtifactError(f"{path}: {name} does not match the manifest's sha256 "
                                f"(modified or corrupted)")
    if manifest.get("backend") == "vta":  # VTA layers and CPU segments: runtime/vta/module.py
        from .vta.module import load_vta

        return load_vta(path, manifest)
    with np.load(os.path.join(path, PARAMS_FILE), allow_pickle=False) as z:
        params = [z[f"p{i}"] for i in range(manifest["num_params"])]
    lib = os.path.join(path, LIB_FILE)
    target_device(manifest["target"])  # no GPU for a CUDA model: say so before TVM's loader fails
    spec = lambda xs: [(x["name"], x["shape"], x["dtype"]) for x in xs]  # noqa: E731
    return CompiledModel(tvm.runtime.load_module(lib), params, spec(manifest["inputs"]),
                         spec(manifest["outputs"]), manifest["target"], report=manifest.get("kernels"),
                         library=lib)
