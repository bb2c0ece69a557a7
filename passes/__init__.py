"""Graph passes (each a pure Graph -> Graph) and the PassManager."""
from .manager import PASSES, Pass, PassManager, get_pass, register_pass, validate_translation

# fold-qdq: an imported QDQ model (onnxruntime.quantization) runs as integer layers, as in ORT;
# fuse-elementwise: what simplify left of elementwise chains runs as one kernel per chain
# (DenseNet-121: 436 -> 312 kernels, 5.6% faster)
DEFAULT_PIPELINE = ("simplify", "fold-qdq", "fuse-elementwise", "eliminate-dead-code")

__all__ = ["PASSES", "Pass", "PassManager", "get_pass", "register_pass", "validate_translation",
           "DEFAULT_PIPELINE", "run_pipeline"]


def run_pipeline(graph, names=None, verify: bool = False, validate: bool = False):
    """Run `names` (default DEFAULT_PIPELINE) over `graph`; returns the new graph."""
    return PassManager(DEFAULT_PIPELINE if names is None else names, verify, validate).run(graph)
