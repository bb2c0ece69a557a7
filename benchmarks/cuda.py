"""Light model zoo on a CUDA GPU: nnforge (cuda target) vs nnforge on the CPU (correctness)
and vs PyTorch/cuDNN (latency). Run it on a machine with an NVIDIA GPU.

Each model is compiled for the GPU (`--arch`, default sm_90) and for this CPU; their
outputs on the same random input must agree. Latency is end to end per inference (input
copied to the GPU, output copied back), nnforge and PyTorch timed interleaved in this
process, medians in ms. PyTorch runs the same ONNX model converted with onnx2torch
(fp32, cuDNN, TF32 off) when torch and onnx2torch are installed; otherwise its column
is empty. Results also go to benchmarks/out/cuda.json.

    TVM_CUDA_COMPILE_MODE=nvcc .venv/bin/python benchmarks/cuda.py [--arch sm_90] [--rounds 10] [MODEL ...]

(TVM compiles the artifact's CUDA source when it is loaded: with nvcc when
TVM_CUDA_COMPILE_MODE=nvcc, else with NVRTC from the cuda-bindings package.)
"""
import argparse
import os

import numpy as np

import nnforge
from nnforge.bench import interleaved, write_json
from nnforge.models import light_zoo


def torch_runner(model, feeds):
    """A callable running `model` in PyTorch on the GPU (numpy in, numpy out), or None."""
    try:
        import onnx2torch
        import torch
    except ImportError:
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    net = onnx2torch.convert(model).cuda().eval()
    arrays = list(feeds.values())

    def run():
        with torch.no_grad():
            out = net(*[torch.from_numpy(a).cuda() for a in arrays])
        return (out[0] if isinstance(out, (list, tuple)) else out).cpu().numpy()
    return run


def rel_err(got, want) -> float:
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="*", default=list(light_zoo.NAMES))
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    rows = []
    print(f"{'model':14s} {'rel err vs CPU':>14s} {'nnforge ms':>10s} {'torch ms':>9s} {'nnforge/torch':>13s}")
    for name in args.models:
        model = light_zoo.load(name)
        gpu = nnforge.compile(model, target={"kind": "cuda", "arch": args.arch})
        cpu = nnforge.compile(model)
        rng = np.random.default_rng(0)
        feeds = {n: rng.standard_normal(s).astype(d) for n, s, d in gpu.inputs}
        err = rel_err(gpu.run(feeds)[0], cpu.run(feeds)[0])
        fns = {"nnforge": lambda: gpu.run(feeds)}
        torch_run = torch_runner(model, feeds)
        if torch_run is not None:
            fns["torch"] = torch_run
            err_torch = rel_err(torch_run(), cpu.run(feeds)[0])
            assert err_torch < 1e-3, f"{name}: PyTorch disagrees with nnforge's CPU output ({err_torch:.2e})"
        t = interleaved(fns, rounds=args.rounds)
        row = {"model": name, "rel_err_vs_cpu": err, "nnforge_ms": t["nnforge"]["median"] * 1e3,
               "torch_ms": t["torch"]["median"] * 1e3 if "torch" in t else None}
        rows.append(row)
        ratio = f"{row['nnforge_ms'] / row['torch_ms']:13.2f}" if row["torch_ms"] else f"{'':>13s}"
        torch_ms = f"{row['torch_ms']:9.2f}" if row["torch_ms"] else f"{'n/a':>9s}"
        print(f"{name:14s} {err:14.2e} {row['nnforge_ms']:10.2f} {torch_ms} {ratio}", flush=True)
    write_json(os.path.join(os.path.dirname(__file__), "out", "cuda.json"), rows, indent=2)


if __name__ == "__main__":
    main()
