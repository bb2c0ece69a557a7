"""`make demo`: compile a ResNet-18 (random weights), check it against ONNX Runtime, time both."""
import sys
import time

import numpy as np


def main() -> int:
    import nnforge
    from nnforge.bench import compare_with_ort
    from nnforge.models.builders import resnet

    model = resnet(depth=18)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    print("compiling ResNet-18 (1x3x224x224, random weights) ...", flush=True)
    t0 = time.time()
    cm = nnforge.compile(model, progress=lambda m: print(f"  [nnforge] {m}", flush=True))
    compile_s = time.time() - t0
    r = compare_with_ort(model, {"input": x}, compiled=cm, rounds=10)
    print(f"\nmax |nnforge - ORT| / max |ORT| = {r['max_rel_err']:.2e}  "
          f"({'OK' if r['max_rel_err'] <= 1e-4 else 'MISMATCH'})")
    print(f"\n{'':14s} {'median ms':>10s} {'min ms':>8s} {'max ms':>8s}")
    for k, label in (("nnforge", "nnforge"), ("ort", "ONNX Runtime")):
        s = r["spread"][k]
        print(f"{label:14s} {s['median'] * 1e3:10.2f} {s['min'] * 1e3:8.2f} {s['max'] * 1e3:8.2f}")
    print(f"\nlatency ratio nnforge/ORT {r['ratio']:.2f}   compile {compile_s:.1f}s")
    return 0 if r["max_rel_err"] <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
