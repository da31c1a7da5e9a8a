"""`edgemode bench`: load time, time to first token, decode speed and peak memory of a bundle.

Runtime-only (numpy, onnxruntime, standard library), so it runs on the ARM64 boards it measures.
The prompt is fixed token ids (seeded), decoding is greedy, and every repeat starts a fresh request.
Peak RSS is read after generation; then the engine switches from S = {} through each prefix of the
bundle's domains, timing each switch, and the peak during the switches is reported apart.
"""

from __future__ import annotations

import platform
import resource
import time

import numpy as np
import onnxruntime as ort

from edgemode.devices import cpu, planner
from edgemode.runtime.engine import Engine


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far.

    On Linux, VmHWM: getrusage's ru_maxrss survives exec, so a bench started from a large parent
    process would report the parent's size at fork instead of its own.
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # macOS reports bytes, others KiB
    return peak / 1024 / 1024 if platform.system() == "Darwin" else peak / 1024


def machine() -> dict:
    """This machine as benchmarks report it: CPU, the features that pick onnxruntime's int4 kernels
    and the compute path they imply, onnxruntime's version."""
    return {**cpu.this_machine(), "onnxruntime": ort.__version__, "python": platform.python_version()}


def bench(bundle, domains, prompt_tokens: int = 128, new_tokens: int = 64, threads: int | None = None,
          repeat: int = 3, prefill_chunk: int = planner.PREFILL_CHUNK, seed: int = 0, kv: str = "fp32") -> dict:
    started = time.perf_counter()
    engine = Engine.load(bundle, domains, threads=threads, kv=kv)
    load_s = time.perf_counter() - started
    domains = engine.domains
    vocab = engine.vocab
    prompt = np.random.default_rng(seed).integers(0, vocab, prompt_tokens).tolist()
    engine.eos_token_ids = set()  # measure exactly new_tokens tokens
    ttft, rates, per_token = [], [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        steps = engine.generate_ids(prompt, new_tokens, prefill_chunk=prefill_chunk)
        stamps = [time.perf_counter() for _ in steps]
        ttft.append((stamps[0] - t0) * 1000)
        gaps = np.diff(stamps)
        per_token += (gaps * 1000).tolist()
        rates.append(len(gaps) / (stamps[-1] - stamps[0]))
    peak_rss, graph_bytes = peak_rss_mb(), engine.loaded_graph_bytes
    switch_s = {}  # S = {} -> {d1} -> {d1,d2} -> ...: each switch composes and loads the next set
    engine.set_domains([])
    bundle_domains = engine.manifest.domains
    for i in range(1, len(bundle_domains) + 1):
        started = time.perf_counter()
        engine.set_domains(bundle_domains[:i])
        switch_s[",".join(bundle_domains[:i])] = time.perf_counter() - started
    return {
        "load_s": load_s,
        "switch_s": switch_s,
        "switch_peak_rss_mb": peak_rss_mb(),
        "ttft_ms": float(np.median(ttft)),
        "decode_tok_s": float(np.median(rates)),
        "p95_token_ms": float(np.percentile(per_token, 95)),
        "peak_rss_mb": peak_rss,
        "graph_bytes": graph_bytes,
        "domains": domains,
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "threads": threads,
        "repeat": repeat,
        "prefill_chunk": prefill_chunk,
        "kv": engine.kv.name,
        "quantization": dict(engine.manifest.quantization),
        "execution_provider": engine.execution_provider,
        "machine": machine(),
    }
