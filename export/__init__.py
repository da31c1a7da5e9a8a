"""Export of a MoDE model to a bundle of per-component ONNX graphs (needs `edgemode[export]`)."""

from edgemode.export.exporter import export

__all__ = ["export"]
