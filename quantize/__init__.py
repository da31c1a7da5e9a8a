"""Quantization of exported graphs (onnxruntime's quantizers)."""

from edgemode.quantize import int4
from edgemode.quantize.int4 import Int4Config, quantize_int4

__all__ = ["Int4Config", "int4", "quantize_int4"]
