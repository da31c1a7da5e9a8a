"""Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgemode import EdgemodeError


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0 means greedy
    top_k: int = 0  # 0 means no top-k cut
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        numbers = (self.temperature, self.top_p)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers) or \
                isinstance(self.top_k, bool) or not isinstance(self.top_k, int):
            raise EdgemodeError("temperature and top_p must be numbers and top_k an integer")
        if not np.isfinite(self.temperature) or self.temperature < 0:
            raise EdgemodeError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise EdgemodeError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise EdgemodeError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise EdgemodeError(f"seed must be an integer >= 0, got {self.seed!r}")


def choose(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator) -> int:
    """One token id from a (vocab,) logits vector."""
    if sampling.temperature == 0:
        return int(np.argmax(logits))
    with np.errstate(over="ignore"):  # tiny temperatures send all but the top score to -inf, as they should
        scores = (logits.astype(np.float64) - logits.max()) / sampling.temperature
    if 0 < sampling.top_k < scores.size:
        cutoff = np.partition(scores, -sampling.top_k)[-sampling.top_k]
        scores = np.where(scores < cutoff, -np.inf, scores)
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    if sampling.top_p < 1:
        order = np.argsort(-probs)
        keep = np.cumsum(probs[order]) - probs[order] < sampling.top_p  # always keeps the top token
        mask = np.zeros_like(probs, dtype=bool)
        mask[order[keep]] = True
        probs = np.where(mask, probs, 0)
        probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))
