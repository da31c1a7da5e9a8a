"""Token count, mean negative log-likelihood and perplexity of a text, in fixed windows.

Shared by the PyTorch reference and the runtime so both score exactly the same tokens: the text is
cut into consecutive windows, and every token of a window but its first is predicted from the
tokens before it in that window.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from edgemode import EdgemodeError


def perplexity(logits_fn: Callable[[np.ndarray], np.ndarray], token_ids, window: int) -> dict:
    """`logits_fn(ids)` returns (len(ids), vocab) logits; returns {"tokens", "nll", "ppl"}."""
    ids = np.asarray(token_ids, np.int64)
    if window < 2:
        raise EdgemodeError(f"the window must be at least 2 tokens, got {window}")
    if len(ids) < 2:
        raise EdgemodeError(f"the text has {len(ids)} token(s); perplexity needs at least 2")
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start : start + window]
        if len(chunk) < 2:
            break
        logits = np.asarray(logits_fn(chunk), np.float64)[:-1]
        shifted = logits - logits.max(-1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(-1))
        total += float((log_norm - shifted[np.arange(len(chunk) - 1), chunk[1:]]).sum())
        count += len(chunk) - 1
    nll = total / count
    return {"tokens": count, "nll": nll, "ppl": math.exp(nll)}
