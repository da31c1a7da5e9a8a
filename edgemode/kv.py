"""The KV cache types a composed decoder can keep, chosen when a domain set is composed (`--kv`,
`Engine.load(kv=...)`), checked once where the choice enters.

    fp32  4 bytes per cached key or value
    int8  1 byte, symmetric, a static float32 scale per KV head and channel (onnxruntime's PER_CHANNEL)
    int4  half a byte (onnxruntime packs two values per uint8, stored + 8), the same scales

The planner counts a type's bytes, the composer sets onnxruntime's GroupQueryAttention for it, and
the engine allocates its buffers. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgemode import EdgemodeError


@dataclass(frozen=True)
class KVType:
    name: str
    bits: int  # per cached key or value
    element: str  # numpy's name of the buffer's element type

    @property
    def quantized(self) -> bool:
        return self.bits < 32

    @property
    def qmax(self) -> int:
        """The largest quantized magnitude: scale = absmax / qmax."""
        return 2 ** (self.bits - 1) - 1

    def stored_dim(self, head_dim: int) -> int:
        """Elements per cached head vector in the buffer (int4: two values per byte)."""
        return head_dim * self.bits // 8 if self.quantized else head_dim

    def layer_bytes(self, kv_heads: int, head_dim: int, positions: int) -> int:
        """Bytes of one layer's keys and values at `positions`, with its scales (two float32 per
        head and channel when quantized)."""
        scales = 2 * kv_heads * head_dim * 4 if self.quantized else 0
        return 2 * kv_heads * head_dim * positions * self.bits // 8 + scales


KV_TYPES = {t.name: t for t in (KVType("fp32", 32, "float32"), KVType("int8", 8, "int8"), KVType("int4", 4, "uint8"))}
FP32 = KV_TYPES["fp32"]


def kv_type(name) -> KVType:
    """A KV type by name ('fp32', 'int8', 'int4'); a KVType passes through."""
    if isinstance(name, KVType):
        return name
    if not isinstance(name, str) or name not in KV_TYPES:
        raise EdgemodeError(f"the KV cache type must be one of {', '.join(KV_TYPES)}, got {name!r}")
    return KV_TYPES[name]
