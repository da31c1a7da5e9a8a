"""Soak: generate many tokens with a domain switch every --switch tokens; report RSS drift.

RSS is sampled after each request (100 tokens by default). Drift compares the median RSS of the
last 10% of requests with that of requests 10-20% (after warm-up).

    python scripts/soak.py BUNDLE [--tokens 10000] [--switch 100]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np

from edgemode.runtime import Engine, Sampling


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--tokens", type=int, default=10000)
    parser.add_argument("--switch", type=int, default=100)
    args = parser.parse_args()
    engine = Engine.load(args.bundle, [])
    engine.eos_token_ids = set()  # every request runs its full length
    domains = engine.manifest.domains
    subsets = itertools.cycle([[]] + [[d] for d in domains] + ([domains] if len(domains) > 1 else []))
    samples, done, started = [], 0, time.time()
    for request in itertools.count():
        engine.set_domains(next(subsets))
        prompt = np.random.default_rng(request).integers(0, engine.manifest.backbone.vocab_size, 16).tolist()
        done += sum(1 for _ in engine.generate_ids(prompt, args.switch, Sampling(temperature=0.8, seed=request)))
        samples.append(rss_mb())
        if done >= args.tokens:
            break
    n = len(samples)
    early, late = np.median(samples[n // 10 : max(n // 5, n // 10 + 1)]), np.median(samples[-max(n // 10, 1):])
    print(json.dumps({"tokens": done, "requests": n, "seconds": round(time.time() - started, 1),
                      "rss_early_mb": round(float(early), 1), "rss_late_mb": round(float(late), 1),
                      "drift": round(float(late / early - 1), 4), "rss_max_mb": round(max(samples), 1)}))


if __name__ == "__main__":
    main()
