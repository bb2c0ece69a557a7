"""Model frontends: ONNX import (`import_model`) and export back to ONNX (`export_model`)."""
from .onnx import import_model
from .onnx_export import export_model

__all__ = ["import_model", "export_model"]
