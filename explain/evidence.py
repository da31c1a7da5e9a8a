"""Representer evidence: the training passages that most support a predicted token.

Following "Sample-based explanations via generalized representers" (Tsai, Yeh, Ravikumar, NeurIPS
2023), the evidence a training point i gives for the prediction of token c at a test point t is

    phi(i, t) = alpha_i(c) * K(h_i, h_t)

- Kernel K: the inner product of the head's input, the final-norm hidden state h (what the
  runtime's trace returns). The head is linear in h (logit_c = w_c . h), so this is the
  representer-point kernel of the last layer: with the head's weights at a regularised optimum,
  w_c = sum_i alpha_i(c) h_i (times a positive constant), and the logit of c at t is the sum of the
  phi(i, t). It needs no gradient at run time, only one dot product per stored position.
- Global importance alpha_i(c) = -d loss_i / d logit_c = 1[y_i = c] - p_i(c): the negative training
  loss gradient with respect to the logit of c (the representer's alpha, up to that constant).
  Positive where the training next token y_i is c and the model did not already predict it surely;
  negative where the model expected c and the text had something else.

A training point is one position of a passage (a window of up to `passage_tokens` tokens of one
training document, run alone with only its domain's expert active, as training sees it) and a
passage's score is the sum of its positions' phi. alpha needs p_i(c) for any c, so the index keeps
each position's top-`TOP` next-token probabilities: p_i(c) of any other token counts as 0 (it is
below the TOP-th probability).

The index is the bundle's optional evidence file (`names.EVIDENCE_FILE`), an .npz of plain arrays
(read with allow_pickle=False) plus one JSON array `meta` with the passages' texts; the manifest
lists it and its sha256 like every other file. This module needs numpy and json only: the
runtime side reads it without torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgemode import EdgemodeError
from edgemode.bundle import manifest as bundle_manifest
from edgemode.bundle.manifest import BundleError

FORMAT, VERSION = "edgemode-evidence", 1
TOP = 8  # next-token probabilities kept per position
# Arrays of the file: one row per stored position.
ARRAYS = {
    "hidden": (np.float16, 2),  # [positions, hidden_size] the head's input
    "target": (np.int32, 1),  # the training next token y_i
    "target_prob": (np.float32, 1),  # p_i(y_i)
    "top_ids": (np.int32, 2),  # [positions, TOP] the likeliest next tokens ...
    "top_probs": (np.float32, 2),  # ... and their probabilities
    "passage": (np.int32, 1),  # the passage the position belongs to
}


@dataclass
class Index:
    """An evidence index: the ARRAYS, and `passages` [{"domain", "text"}] the positions point into."""

    hidden: np.ndarray
    target: np.ndarray
    target_prob: np.ndarray
    top_ids: np.ndarray
    top_probs: np.ndarray
    passage: np.ndarray
    passages: list[dict]
    passage_tokens: int

    @property
    def domains(self) -> list[str]:
        return list(dict.fromkeys(p["domain"] for p in self.passages))


def write(path: str | Path, index: Index) -> None:
    meta = {"format": FORMAT, "version": VERSION, "passage_tokens": index.passage_tokens, "passages": index.passages}
    arrays = {name: np.ascontiguousarray(getattr(index, name), dtype) for name, (dtype, _) in ARRAYS.items()}
    with open(path, "wb") as f:
        np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)


def load_index(bundle: str | Path) -> Index | None:
    """The bundle's evidence index, or None when it was exported without `--evidence`.
    The file is checked against the manifest's size and sha256 first."""
    bundle = Path(bundle)
    manifest = bundle_manifest.read(bundle)
    name = manifest.evidence
    if name is None:
        return None
    bundle_manifest.verify(bundle, manifest, [name], full=True)
    try:
        with np.load(bundle_manifest.resolve(bundle, name), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        meta = json.loads(arrays.pop("meta").tobytes())
    except (ValueError, OSError, KeyError, UnicodeDecodeError) as e:
        raise BundleError(f"evidence file {name} is not readable: {e}") from None
    return _checked(name, arrays, meta, manifest)


def _checked(name: str, arrays: dict, meta, manifest: bundle_manifest.Manifest) -> Index:
    """`arrays` and `meta` as an Index, or a one-line BundleError saying what is wrong."""

    def require(condition, what: str) -> None:
        if not condition:
            raise BundleError(f"malformed evidence file {name}: {what}")

    require(isinstance(meta, dict) and meta.get("format") == FORMAT, f"format is not {FORMAT!r}")
    require(meta.get("version") == VERSION, f"version {meta.get('version')!r}, this edgemode reads {VERSION}")
    passages = meta.get("passages")
    require(isinstance(passages, list) and all(isinstance(p, dict) and p.get("domain") in manifest.domains
                                               and isinstance(p.get("text"), str) for p in passages),
            "passages must be {domain, text} of the bundle's domains")
    require(sorted(arrays) == sorted(ARRAYS), f"arrays must be {', '.join(ARRAYS)}")
    for key, (dtype, ndim) in ARRAYS.items():
        require(arrays[key].dtype == dtype and arrays[key].ndim == ndim, f"{key} must be {np.dtype(dtype).name} with {ndim} dimension(s)")
    rows = len(arrays["passage"])
    require(all(len(a) == rows for a in arrays.values()), "arrays of different lengths")
    require(arrays["hidden"].shape[1] == manifest.backbone.hidden_size, "hidden vectors are not the backbone's hidden size")
    require(arrays["top_ids"].shape == arrays["top_probs"].shape, "top_ids and top_probs differ in shape")
    require(rows == 0 or (arrays["passage"].min() >= 0 and arrays["passage"].max() < len(passages)), "passage out of range")
    require(isinstance(meta.get("passage_tokens"), int), "passage_tokens")
    return Index(**arrays, passages=passages, passage_tokens=meta["passage_tokens"])


def alpha(index: Index, token_id: int, rows: np.ndarray) -> np.ndarray:
    """alpha_i(token_id) = 1[y_i = token_id] - p_i(token_id) at the positions `rows`."""
    is_target = index.target[rows] == token_id
    in_top = np.where(index.top_ids[rows] == token_id, index.top_probs[rows], 0).sum(1)
    return np.where(is_target, 1 - index.target_prob[rows], -in_top)


def top_passages(index: Index, hidden_vector, token_id: int, domains, k: int = 5) -> list[dict]:
    """The `k` passages of `domains`' corpora with the highest positive evidence for predicting
    `token_id` at a test point whose head input is `hidden_vector`: [{"domain", "text", "score",
    "passage"}], highest score first. A passage with score <= 0 does not support the prediction
    and is not returned, so the list can be shorter than k."""
    h = np.asarray(hidden_vector)
    if h.shape != (index.hidden.shape[1],) or not np.issubdtype(h.dtype, np.floating) or not np.isfinite(h).all():
        raise EdgemodeError(f"the hidden vector must be {index.hidden.shape[1]} finite numbers (the head's input at one position)")
    if isinstance(token_id, bool) or not isinstance(token_id, (int, np.integer)) or token_id < 0:
        raise EdgemodeError(f"token_id must be a token id, got {token_id!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise EdgemodeError(f"k must be a positive integer, got {k!r}")
    if isinstance(domains, str) or not all(isinstance(d, str) for d in domains):
        raise EdgemodeError("domains must be a list of domain names")
    missing = [d for d in domains if d not in index.domains]
    if missing:
        raise EdgemodeError(f"the evidence index has no passages of {', '.join(map(repr, missing))} (it has {', '.join(index.domains) or 'none'})")
    wanted = np.array([p["domain"] in domains for p in index.passages], bool)
    # Only positions where token_id is the target or among the likeliest have a non-zero alpha.
    rows = np.flatnonzero(((index.target == token_id) | (index.top_ids == token_id).any(1)) & wanted[index.passage])
    evidence = alpha(index, int(token_id), rows) * (index.hidden[rows].astype(np.float32) @ h.astype(np.float32))
    scores = np.bincount(index.passage[rows], weights=evidence, minlength=len(index.passages))
    best = [int(p) for p in np.argsort(-scores, kind="stable")[:k] if scores[p] > 0]
    return [{**index.passages[p], "score": float(scores[p]), "passage": p} for p in best]
