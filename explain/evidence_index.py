"""`export --evidence`: building a bundle's evidence index (edgemode.explain.evidence reads it).

Building it runs the PyTorch model over training passages, so it needs torch and the corpora: the
CLI hands an `EvidenceIndex` to edgemode.export.export, which has it check its request before any
graph is built and write its file into the bundle being made; the exporter imports nothing of it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from edgemode import EdgemodeError
from edgemode.explain import evidence
from edgemode.train import data

PASSAGE_TOKENS = 64  # an evidence passage: a window of this many tokens of one training document
EVIDENCE_BATCH = 8  # passages per forward pass while indexing (bounds the logits' memory)


class EvidenceIndex:
    """Up to `passages` passages per exported domain from its training text: `texts[domain]` when
    given (documents separated by blank lines, as in the corpora's train.txt), else its corpus's
    training split."""

    def __init__(self, passages: int, texts: dict[str, str] | None = None):
        if isinstance(passages, bool) or not isinstance(passages, int) or passages < 1:
            raise EdgemodeError(f"--evidence must be a positive number of passages per domain, got {passages!r}")
        self.passages, self.given, self.texts = passages, texts or {}, None

    def prepare(self, domains) -> None:
        """Check the request for the exported `domains` and read their training text."""
        if not domains:
            raise EdgemodeError("--evidence indexes the exported domains' training text; no domain is exported")
        for domain in domains:
            if domain not in self.given and domain not in data.DOCUMENTS:
                raise EdgemodeError(f"--evidence: no training corpus for domain {domain!r} (corpora: {', '.join(data.DOCUMENTS)})")
        self.texts = {d: self.given[d] if d in self.given else data.text(d, "train") for d in domains}

    def write(self, path: Path, mode, tokenizer_file: Path) -> None:
        """The index of the prepared domains' passages, run through `mode` (a loaded MoDE model)."""
        evidence.write(path, _index(mode, tokenizer_file, self.texts, self.passages))


def _index(mode, tokenizer_file: Path, texts: dict[str, str], per_domain: int) -> evidence.Index:
    """Up to `per_domain` passages of each domain's text (evenly spaced over its windows), each run
    alone through the PyTorch model with only its domain active, as stage 1 trained on it."""
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    head_input = {}
    hook = mode.backbone.model.norm.register_forward_hook(lambda module, args, out: head_input.update(h=out))
    passages, arrays = [], []
    try:
        for domain, text in texts.items():
            started = time.time()
            docs = [doc for doc in text.split(data.SEPARATOR) if doc.strip()]
            encodings = tokenizer.encode_batch(docs, add_special_tokens=False)
            windows = [(e, doc, s) for e, doc in zip(encodings, docs) for s in range(0, len(e.ids) - 1, PASSAGE_TOKENS)]
            if not windows:
                raise EdgemodeError(f"--evidence: the training text of {domain!r} has no passage of two tokens or more")
            picks = np.unique(np.linspace(0, len(windows) - 1, min(per_domain, len(windows))).round().astype(int))
            chosen = []
            for e, doc, s in (windows[i] for i in picks):
                end = min(s + PASSAGE_TOKENS, len(e.ids))
                chosen.append((len(passages), e.ids[s:end]))
                passages.append({"domain": domain, "text": doc[e.offsets[s][0] : e.offsets[end - 1][1]]})
            for i in range(0, len(chosen), EVIDENCE_BATCH):
                batch = chosen[i : i + EVIDENCE_BATCH]
                # Shorter passages padded on the right: causal attention keeps their positions as they are alone.
                length = max(len(window) for _, window in batch)
                ids = torch.as_tensor([window + [0] * (length - len(window)) for _, window in batch])
                with torch.no_grad():
                    probs = torch.softmax(mode(ids, domains=[domain])[:, :-1].float(), -1)
                top = probs.topk(min(evidence.TOP, probs.shape[-1]), -1)
                for row, (passage, window) in enumerate(batch):
                    n = len(window) - 1  # positions with a next token
                    targets = ids[row, 1 : n + 1]
                    arrays.append({
                        "hidden": head_input["h"][row, :n].numpy(), "target": targets.numpy(),
                        "target_prob": probs[row, :n].gather(-1, targets[:, None])[:, 0].numpy(),
                        "top_ids": top.indices[row, :n].numpy(), "top_probs": top.values[row, :n].numpy(),
                        "passage": np.full(n, passage),
                    })
            positions = sum(len(window) - 1 for _, window in chosen)
            print(f"evidence {domain}: {len(picks)} of {len(windows)} passages, {positions} positions, {time.time() - started:.1f} s",
                  file=sys.stderr, flush=True)
    finally:
        hook.remove()
    columns = {key: np.concatenate([a[key] for a in arrays]) for key in evidence.ARRAYS}
    return evidence.Index(**columns, passages=passages, passage_tokens=PASSAGE_TOKENS)
