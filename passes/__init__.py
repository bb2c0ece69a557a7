"""Graph passes (each a pure Graph -> Graph) and the PassManager."""
from .manager import PASSES, Pass, PassManager, get_pass, register_pass, validate_translation

DEFAULT_PIPELINE = ("simplify", "eliminate-dead-code")

__all__ = ["PASSES", "Pass", "PassManager", "get_pass", "register_pass", "validate_translation",
           "DEFAULT_PIPELINE", "run_pipeline"]


def run_pipeline(graph, names=None, verify: bool = False, validate: bool = False):
    """Run `names` (default DEFAULT_PIPELINE) over `graph`; returns the new graph."""
    return PassManager(DEFAULT_PIPELINE if names is None else names, verify, validate).run(graph)
