"""The measurement every peer runner shares (standard library only: each runner has its own venv).

A runner provides `load(args) -> generate`, where `generate(prompt_ids, n, on_token)` produces
exactly n greedy tokens and calls `on_token(id)` as each one is ready. `main` times the load, runs
one warm-up generation and one measured generation, and prints one JSON line:
load_s, ttft_ms, decode_tok_s, peak_rss_mb, ids and the versions of the runner's packages.
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


def main(load, packages: list[str], add_options=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="model file, directory or bundle")
    parser.add_argument("--prompt", required=True, type=Path, help="JSON list of prompt token ids")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    if add_options:
        add_options(parser)
    args = parser.parse_args()
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
