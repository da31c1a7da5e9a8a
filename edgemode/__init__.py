"""edgemode: Modular Domain Experts (MoDE) exported to ONNX and run on-device.

The stages live in their own subpackages: `edgemode.model` (the PyTorch MoDE model),
`edgemode.export`, `edgemode.quantize`, `edgemode.bundle`, `edgemode.runtime`, `edgemode.devices`.
"""

__version__ = "0.1.0"


class EdgemodeError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""
