"""What experts cost, in one process (issue 4's expert targets): memory, then time per token.

Memory (Linux, from /proc/self/status): one engine starts with no domains, then loads the --domains
one at a time, then drops them all. After each step it generates a few tokens and reads its
resident memory. Prints the RSS each expert added against its graph bytes (target <= 1.2x) and
what dropping them gave back.

Time: two engines load the same bundle, one with no domains and one with --domains; their decode runs
(--prompt-tokens prefilled, then --new-tokens single-token steps) alternate, so the machine's load
hits both alike. Prints the median ms per token of each and their ratio, next to the target:
1.05 x (backbone layers + active expert layers) / backbone layers.

    python scripts/expert_overhead.py BUNDLE [--domains legal,med] [--trials 9]
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np

from edgemode.runtime import Engine


def resident_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def memory(bundle: str, domains: list[str], threads: int) -> None:
    engine = Engine.load(bundle, [], threads=threads)

    def settle(active):
        engine.set_domains(active)
        list(engine.generate_ids(list(range(1, 33)), 8))  # first runs allocate their working memory
        return resident_mb(), engine.loaded_graph_bytes / 2**20

    base, graphs = settle([])
    for k in range(1, len(domains) + 1):
        rss, loaded = settle(domains[:k])
        print(f"loading {domains[k - 1]}: +{rss - base:.1f} MB RSS for +{loaded - graphs:.1f} MB of graphs "
              f"({(rss - base) / (loaded - graphs):.2f}x, target <= 1.2x)")
        base, graphs = rss, loaded
    rss, _ = settle([])
    print(f"dropping {','.join(domains)}: {base - rss:.1f} MB of RSS given back")


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
    memory(args.bundle, domains, args.threads)
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
    manifest = engines["{}"].manifest
    layers = manifest.backbone.num_layers
    expert_layers = len(domains) * len(manifest.layout.blocks) * manifest.layout.expert_layers
    limit = 1.05 * (layers + expert_layers) / layers
    print(f"ms per token: {{}} {base:.2f}, {list(engines)[1]} {composed:.2f}; ratio {composed / base:.3f} "
          f"(target <= {limit:.3f} = 1.05 x {layers + expert_layers}/{layers})")


if __name__ == "__main__":
    main()
