"""Running a model compiled for VTA: layers as instruction streams on the simulator, the rest on the CPU.

A VTAKernel is one lowered layer (instructions + a DRAM image holding its packed weights, bias
and micro-ops). A VTAModel runs steps in order over named values: CPU segments (CompiledModels
built by the CPU backend) and VTA layers. Like runtime/module.py it needs only numpy and
tvm.runtime.

Artifact layout (a directory):
    manifest.json   backend "vta", inputs/outputs, the steps, the per-layer report, sha256 of vta.npz
    vta.npz         per VTA layer: encoded instructions and DRAM image
    cpu<i>/         each CPU segment, an ordinary CPU artifact
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from ...errors import ArtifactError, InputError
from ..module import FORMAT, MANIFEST_FILE, CompiledModel, _sha256, _version, check_feeds, load
from .isa import DEFAULT_CONFIG, VTAConfig, decode_program, encode_program
from .layout import DramImage, ceil_div, pack_activations, unpack_activations
from .simulator import SimStats, VTASimulator

LAYERS_FILE = "vta.npz"


@dataclass
class VTAKernel:
    """One layer as VTA runs it: int8 NCHW in, int8 NCHW out.

    `dram` is the image with weights, bias and micro-ops filled in; each run copies it, packs
    the input into region "inp" and reads the output back from region "out".
    """

    program: list
    image: DramImage
    dram: np.ndarray
    in_shape: tuple
    out_shape: tuple
    config: VTAConfig = DEFAULT_CONFIG

    def run(self, x: np.ndarray, simulator: VTASimulator | None = None) -> tuple[np.ndarray, SimStats]:
        """Run the layer on the simulator.

        Args:
            x: int8 NCHW input of shape `in_shape`.
            simulator: reuse one (its SRAM state is irrelevant: every tile loads what it reads).
        Returns:
            (int8 NCHW output of shape `out_shape`, the run's SimStats).
        """
        if x.shape != tuple(self.in_shape) or x.dtype != np.int8:
            raise InputError(f"VTA layer: expected int8{list(self.in_shape)}, got {x.dtype}{list(x.shape)}")
        dram = self.dram.copy()
        self.image.view(dram, "inp")[:] = pack_activations(x, self.config.block_in).view(np.uint8).ravel()
        stats = (simulator or VTASimulator(self.config)).run(self.program, dram)
        n, o, oh, ow = self.out_shape
        bo = self.config.block_out
        out = self.image.view(dram, "out").view(np.int8).reshape(n, ceil_div(o, bo), oh, ow, bo)
        return unpack_activations(out, o), stats

    def to_json(self) -> dict:
        """Everything but the arrays (see `arrays`)."""
        return {"regions": {k: list(v) for k, v in self.image.regions.items()}, "align": self.image.align,
                "size": self.image.size, "in_shape": list(self.in_shape), "out_shape": list(self.out_shape),
                "config": asdict(self.config)}

    def arrays(self) -> dict:
        """The encoded instructions and the DRAM image."""
        return {"program": np.frombuffer(encode_program(self.program, self.config), np.uint8), "dram": self.dram}

    @classmethod
    def from_saved(cls, meta: dict, program: np.ndarray, dram: np.ndarray) -> "VTAKernel":
        """Inverse of to_json + arrays."""
        config = VTAConfig(**meta["config"])
        image = DramImage(meta["align"], {k: tuple(v) for k, v in meta["regions"].items()}, meta["size"])
        return cls(decode_program(program.tobytes(), config), image, dram, tuple(meta["in_shape"]),
                   tuple(meta["out_shape"]), config)


@dataclass
class CpuStep:
    """A CPU segment: runs `model` on values `inputs`, defines values `outputs`."""

    model: CompiledModel
    inputs: list
    outputs: list


@dataclass
class VTAStep:
    """A VTA layer: graph node `node` (op `op`) reading value `input`, defining `output`
    (reshaped to `out_shape`: a dense layer runs as a 1x1 conv)."""

    node: str
    op: str
    kernel: VTAKernel
    input: str
    output: str
    out_shape: tuple


class VTAModel:
    """A model compiled for the VTA target (made by codegen.vta.target, or `load` of its artifact).

    `last_stats` maps each VTA layer's node name to the SimStats of the latest run; `report`
    lists every node with where it ran ("vta" or "cpu") and, for VTA layers, instruction
    count, bytes moved and estimated cycles.
    """

    def __init__(self, steps: list, inputs, outputs, target: dict, report=None):
        self.steps = steps
        self.inputs = [(n, tuple(s), d) for n, s, d in inputs]
        self.outputs = [(n, tuple(s), d) for n, s, d in outputs]
        self.target = target
        self.report = report or []
        self.last_stats: dict[str, SimStats] = {}
        self._simulator = VTASimulator(VTAConfig(**target["config"]))

    def run(self, feeds: dict) -> list:
        """Run the model: feeds (input name -> numpy array) -> outputs in graph output order."""
        env = dict(zip((n for n, _, _ in self.inputs), check_feeds(self.inputs, feeds)))
        for step in self.steps:
            if isinstance(step, CpuStep):
                env.update(zip(step.outputs, step.model.run({n: env[n] for n in step.inputs})))
            else:
                y, self.last_stats[step.node] = step.kernel.run(env[step.input].reshape(step.kernel.in_shape),
                                                                self._simulator)
                env[step.output] = y.reshape(step.out_shape)
        return [env[n] for n, _, _ in self.outputs]

    def export(self, path: str) -> str:
        """Write the artifact directory `path` (created if needed); returns the path."""
        os.makedirs(path, exist_ok=True)
        steps, arrays = [], {}
        for i, step in enumerate(self.steps):
            if isinstance(step, CpuStep):
                step.model.export(os.path.join(path, f"cpu{i}"))
                steps.append({"kind": "cpu", "dir": f"cpu{i}", "inputs": step.inputs, "outputs": step.outputs})
            else:
                arrays.update({f"{k}{i}": a for k, a in step.kernel.arrays().items()})
                steps.append({"kind": "vta", "node": step.node, "op": step.op, "input": step.input,
                              "output": step.output, "out_shape": list(step.out_shape),
                              "kernel": step.kernel.to_json()})
        layers = os.path.join(path, LAYERS_FILE)
        np.savez(layers, **arrays)
        manifest = {
            "format": FORMAT, "nnforge_version": _version(), "backend": "vta", "target": self.target,
            "inputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in self.inputs],
            "outputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in self.outputs],
            "steps": steps, "layers": self.report, "files": {LAYERS_FILE: _sha256(layers)},
        }
        with open(os.path.join(path, MANIFEST_FILE), "w") as f:
            json.dump(manifest, f, indent=2)
        return path


def load_vta(path: str, manifest: dict) -> VTAModel:
    """The VTAModel of an artifact whose manifest (version and checksums checked by runtime.load)
    says backend "vta"."""
    steps = []
    try:
        with np.load(os.path.join(path, LAYERS_FILE), allow_pickle=False) as z:
            for i, s in enumerate(manifest["steps"]):
                if s["kind"] == "cpu":
                    steps.append(CpuStep(load(os.path.join(path, s["dir"])), s["inputs"], s["outputs"]))
                else:
                    kernel = VTAKernel.from_saved(s["kernel"], z[f"program{i}"], z[f"dram{i}"])
                    steps.append(VTAStep(s["node"], s["op"], kernel, s["input"], s["output"], tuple(s["out_shape"])))
    except KeyError as e:
        raise ArtifactError(f"{path}: the VTA manifest or {LAYERS_FILE} lacks {e}; recompile the model") from None
    spec = lambda xs: [(x["name"], x["shape"], x["dtype"]) for x in xs]  # noqa: E731
    return VTAModel(steps, spec(manifest["inputs"]), spec(manifest["outputs"]), manifest["target"],
                    manifest.get("layers"))
