"""The MoDE layout: the backbone's layers in blocks, and the layers each block's experts mirror.

One type for the model directory (mode.json), the bundle's manifest and the memory planner.
Standard library only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgemode import EdgemodeError


@dataclass(frozen=True)
class Layout:
    """Which backbone layers form each block, and which backbone layer each expert layer mirrors.

    An expert layer takes its attention window (and, with --init copy, its weights) from the
    backbone layer it mirrors.
    """

    blocks: tuple[tuple[int, ...], ...]
    expert_sources: tuple[tuple[int, ...], ...]

    @classmethod
    def split(cls, num_layers: int, num_blocks: int, expert_layers: int) -> "Layout":
        if not 1 <= num_blocks <= num_layers:
            raise EdgemodeError(f"--blocks must be between 1 and the backbone's {num_layers} layers, got {num_blocks}")
        if expert_layers < 1:
            raise EdgemodeError(f"--expert-layers must be at least 1, got {expert_layers}")
        # Consecutive blocks; when L is not a multiple of B the first blocks get one layer more.
        base, extra = divmod(num_layers, num_blocks)
        blocks, start = [], 0
        for b in range(num_blocks):
            size = base + (b < extra)
            blocks.append(tuple(range(start, start + size)))
            start += size
        # Expert layer j of a block mirrors an evenly spaced layer of that block.
        sources = tuple(
            tuple(block[j * len(block) // expert_layers] for j in range(expert_layers)) for block in blocks
        )
        return cls(tuple(blocks), sources)

    @property
    def expert_layers(self) -> int:
        return len(self.expert_sources[0])

    def running_layers(self, domains: int) -> int:
        """Layers that run, and keep keys and values, with `domains` experts active: the backbone's,
        then the experts' (in a composed decoder their KV index follows this order, block by block)."""
        return sum(map(len, self.blocks)) + domains * sum(map(len, self.expert_sources))

    def to_json(self) -> dict:
        return {k: [list(x) for x in v] for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> "Layout":
        return cls(tuple(map(tuple, data["blocks"])), tuple(map(tuple, data["expert_sources"])))
