"""What a deployed model needs: loading an exported artifact and running it.
Imports numpy and tvm.runtime only."""
from .module import CompiledModel, load

__all__ = ["CompiledModel", "load"]
