"""The slim on-device runtime: numpy, onnxruntime and tokenizers only."""

from edgemode.runtime.engine import Engine
from edgemode.runtime.sampling import Sampling

__all__ = ["Engine", "Sampling"]
