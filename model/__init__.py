"""The MoDE model in PyTorch and its directory format (needs `edgemode[export]`)."""

from edgemode.model.mode import MoDE, Layout
from edgemode.model.store import create, load, fingerprint

__all__ = ["MoDE", "Layout", "create", "load", "fingerprint"]
