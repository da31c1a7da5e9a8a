"""Decode time per token with experts against without, in one process (issue 4's expert target).

Both engines load the same bundle, one with no domains and one with --domains; their decode runs
(--prompt-tokens prefilled, then --new-tokens single-token steps) alternate, so the machine's load
hits both alike. Prints the median ms per token of each and their ratio, next to the target:
1.05 x (backbone layers + active expert layers) / backbone layers.

    python scripts/expert_overhead.py BUNDLE [--domains legal,med] [--trials 9]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from edgemode.runtime import Engine


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--domains", default="legal,med")
    parser.add_argument("--trials", type=int, default=9)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    domains = [d for d in args.domains.split(",") if d]
    engines = {"{}": Engine.load(args.bundle, [], threads=args.threads),
               "{" + ",".join(domains) + "}": Engine.load(args.bundle, domains, threads=args.threads)}
    ms = {name: [] for name in engines}
    for _ in range(args.trials):
        for name, engine in engines.items():
            cache = engine.new_cache(args.prompt_tokens + args.new_tokens)
            engine.forward(np.arange(args.prompt_tokens), cache, last_only=True)
            start = time.perf_counter()
            for _ in range(args.new_tokens):
                engine.forward(np.array([5]), cache, last_only=True)
            ms[name].append((time.perf_counter() - start) / args.new_tokens * 1e3)
    base, composed = (float(np.median(v)) for v in ms.values())
    layout = engines["{}"].manifest["layout"]
    layers = engines["{}"].manifest["backbone"]["num_layers"]
    expert_layers = len(domains) * len(layout["blocks"]) * len(layout["expert_sources"][0])
    limit = 1.05 * (layers + expert_layers) / layers
    print(f"ms per token: {{}} {base:.2f}, {list(engines)[1]} {composed:.2f}; ratio {composed / base:.3f} "
          f"(target <= {limit:.3f} = 1.05 x {layers + expert_layers}/{layers})")


if __name__ == "__main__":
    main()
