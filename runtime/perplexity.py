"""Per-token log-likelihoods, token count, mean negative log-likelihood and perplexity of a text, in
fixed windows.

Shared by the PyTorch reference, the runtime and `edgemode explain`, so all score exactly the same
tokens: the text is cut into consecutive windows, and every token of a window but its first is
predicted from the tokens before it in that window.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from edgemode import EdgemodeError


def token_log_likelihoods(logits_fn: Callable[[np.ndarray], np.ndarray], token_ids, window: int) -> tuple[np.ndarray, np.ndarray]:
    """log p(x_t | the window's tokens before t) for every scored token, and those tokens' positions t
    in `token_ids`. `logits_fn(ids)` returns (len(ids), vocab) logits."""
    ids = np.asarray(token_ids, np.int64)
    if window < 2:
        raise EdgemodeError(f"the window must be at least 2 tokens, got {window}")
    if len(ids) < 2:
        raise EdgemodeError(f"the text has {len(ids)} token(s); scoring needs at least 2")
    scores, positions = [], []
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start : start + window]  # at least 2 tokens: start < len(ids) - 1
        logits = np.asarray(logits_fn(chunk), np.float64)[:-1]
        shifted = logits - logits.max(-1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(-1))
        scores.append(shifted[np.arange(len(chunk) - 1), chunk[1:]] - log_norm)
        positions.append(np.arange(start + 1, start + len(chunk)))
    return np.concatenate(scores), np.concatenate(positions)


def perplexity(logits_fn: Callable[[np.ndarray], np.ndarray], token_ids, window: int) -> dict:
    """`logits_fn(ids)` returns (len(ids), vocab) logits; returns {"tokens", "nll", "ppl"}."""
    scores, _ = token_log_likelihoods(logits_fn, token_ids, window)
    nll = -float(scores.mean())
    return {"tokens": len(scores), "nll": nll, "ppl": math.exp(nll)}
