"""The measurement every peer runner shares (standard library only: each runner has its own venv).

A runner provides `load(args) -> generate`, where `generate(prompt_ids, n, on_token)` produces
exactly n greedy tokens and calls `on_token(id)` as each one is ready. `main` times the load, runs
one warm-up generation and one measured generation, and prints one JSON line:
load_s, ttft_ms, decode_tok_s, peak_rss_mb, ids and the versions of the runner's packages.

A runner may also provide `score(args) -> logits_of`, where `logits_of(ids)` returns the logits of
every position of `ids` as an (len(ids), vocab) array, computed in one pass (not timed). With
`--score FILE` (a JSON object: text name -> token ids) `main` prints instead one JSON line with, per
text and per position i < len(ids) - 1, the argmax of position i's logits and the log-softmax of
the actual next token ids[i + 1] under them; the parent turns those into perplexity and top-1
agreement against a reference engine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib.metadata import version
from pathlib import Path


class HFStreamer:
    """A transformers streamer: generate() calls put() with the prompt first, then each new token."""

    def __init__(self, on_token):
        self.on_token = on_token
        self.prompt_seen = False

    def put(self, value):
        if self.prompt_seen:
            self.on_token(int(value.reshape(-1)[0]))
        self.prompt_seen = True

    def end(self):
        pass


def peak_rss_mb() -> float:
    """VmHWM, as edgemode.runtime.bench reads it (this venv may not have edgemode): getrusage's
    ru_maxrss survives exec, so it can report the parent process's size instead."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def _generate(generate, prompt_ids: list[int], n: int) -> tuple[list[int], float, list[float]]:
    ids, stamps = [], []

    def on_token(token: int):
        stamps.append(time.perf_counter())
        ids.append(token)

    start = time.perf_counter()
    generate(prompt_ids, n, on_token)
    if len(ids) != n:
        sys.exit(f"the runner produced {len(ids)} tokens, not {n}")
    return ids, start, stamps


def _score(score, args, versions: dict) -> None:
    """Per text: argmax and log-softmax of the next token at every position but the last."""
    import numpy as np  # every runner's venv has it (onnxruntime, torch and llama-cpp-python need it)

    texts = json.loads(args.score.read_text())
    logits_of = score(args)
    result = {}
    for name, ids in texts.items():
        logits = np.asarray(logits_of(ids), dtype=np.float64)
        if logits.ndim != 2 or logits.shape[0] != len(ids):
            sys.exit(f"the runner gave logits of shape {logits.shape} for {len(ids)} ids, not ({len(ids)}, vocab)")
        logits = logits[:-1]
        shifted = logits - logits.max(-1, keepdims=True)
        log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        result[name] = {"argmax": logits.argmax(-1).tolist(),
                        "logprob": log_softmax[np.arange(len(ids) - 1), ids[1:]].tolist(),
                        "vocab": logits.shape[1]}
    print(json.dumps({"scores": result, "versions": versions}), flush=True)


def main(load, packages: list[str], add_options=None, score=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="model file, directory or bundle")
    parser.add_argument("--prompt", type=Path, help="JSON list of prompt token ids (speed)")
    parser.add_argument("--score", type=Path, help="JSON object of text name -> token ids: print next-token "
                        "argmax and log-probabilities at every position instead of timing")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    if add_options:
        add_options(parser)
    args = parser.parse_args()
    if args.score:
        if score is None:
            sys.exit("this runner has no scoring mode")
        return _score(score, args, {p: version(p) for p in packages})
    if not args.prompt:
        sys.exit("--prompt or --score is required")
    prompt_ids = json.loads(args.prompt.read_text())

    start = time.perf_counter()
    generate = load(args)
    load_s = time.perf_counter() - start
    _generate(generate, prompt_ids, args.new_tokens)  # warm-up: first-run allocations and caches
    ids, start, stamps = _generate(generate, prompt_ids, args.new_tokens)

    print(json.dumps({
        "load_s": load_s,
        "ttft_ms": (stamps[0] - start) * 1000,
        "decode_tok_s": (len(stamps) - 1) / (stamps[-1] - stamps[0]),
        "peak_rss_mb": peak_rss_mb(),
        "ids": ids,
        "versions": {p: version(p) for p in packages},
    }), flush=True)
