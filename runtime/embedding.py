"""The embedding table, read from the bundle a row at a time instead of held in memory.

A decode step needs one row of the table, a prefill one row per prompt token. Reading those rows
with os.pread keeps the table out of the process's resident memory whatever the vocabulary's size
(onnxruntime would memory-map it, and how much of a mapping is resident depends on the page cache's
history). onnxruntime has no out-of-core Gather, so the rows are dequantized here exactly as its
GatherBlockQuantized does, (q - zero_point) * scale per block; tests/test_runtime.py checks the two
agree on every bundle precision.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgemode.bundle import manifest as bundle_manifest


class EmbeddingTable:
    """`table(ids)` -> (1, len(ids), hidden) float32 rows of the table a manifest's
    `embedding_table` describes."""

    def __init__(self, path: Path, spec: bundle_manifest.EmbeddingTable, hidden: int):
        self.spec, self.hidden = spec, hidden  # spec: validated by bundle.manifest.read
        self.blocks = -(-hidden // spec.block_size) if spec.bits != 32 else 0  # the last may be partial
        self._file = open(path, "rb", buffering=0)  # closed with the engine

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        bits, hidden, blocks = self.spec.bits, self.hidden, self.blocks
        q = np.stack([self._read("weight", int(i) * hidden, hidden, bits) for i in ids])
        if bits == 32:
            return q[None]
        if self.spec.signed:  # two's complement
            q = np.where(q >= 2 ** (bits - 1), q - 2**bits, q)
        scales = np.stack([self._read("scales", int(i) * blocks, blocks, 32) for i in ids])
        if self.spec.zero_points is not None:
            q -= self._per_element(np.stack([self._read("zero_points", int(i) * blocks, blocks, bits) for i in ids]))
        elif not self.spec.signed:  # GatherBlockQuantized's default zero point
            q -= 2 ** (bits - 1)
        return (q * self._per_element(scales))[None]

    def close(self) -> None:
        self._file.close()

    def _per_element(self, per_block: np.ndarray) -> np.ndarray:
        """(n, blocks) -> (n, hidden): each block's value repeated over its elements."""
        return np.repeat(per_block, self.spec.block_size, axis=1)[:, : self.hidden]

    def _read(self, tensor: str, first: int, count: int, bits: int) -> np.ndarray:
        """Elements [first, first + count) of a flat tensor of `bits`-wide elements, as float32.
        4-bit elements are packed two to a byte, the first in the low bits (ONNX's uint4)."""
        offset = getattr(self.spec, tensor)
        if bits == 32:
            return np.frombuffer(os.pread(self._file.fileno(), 4 * count, offset + 4 * first), np.float32)
        if bits == 8:
            return np.frombuffer(os.pread(self._file.fileno(), count, offset + first), np.uint8).astype(np.float32)
        start, end = first // 2, (first + count + 1) // 2
        packed = np.frombuffer(os.pread(self._file.fileno(), end - start, offset + start), np.uint8)
        values = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(-1)
        return values[first % 2 : first % 2 + count].astype(np.float32)
