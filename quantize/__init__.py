"""Quantization of exported graphs (onnxruntime's quantizers)."""

from edgemode.quantize.int4 import Int4Config, quantize_int4

__all__ = ["Int4Config", "quantize_int4"]
