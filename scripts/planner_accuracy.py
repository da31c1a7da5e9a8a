"""Planner accuracy: predicted peak memory against `edgemode bench`'s measured peak RSS.

For each bundle and domain set, fresh `edgemode bench --json` processes (so each peak RSS is that
configuration's alone) against `edgemode plan` at the same KV length (prompt + new tokens). Each row
is measured twice: "cold", with the bundle's files evicted from the page cache first (a first start
after boot), then "warm", right after.

    python scripts/planner_accuracy.py BUNDLE [BUNDLE ...] [--domains "" legal legal,med]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from edgemode.bundle import manifest as bundle_manifest
from edgemode.devices import planner

PROMPT, NEW = 128, 64


def evict_from_page_cache(bundle: str) -> None:
    for path in Path(bundle).iterdir():
        with open(path, "rb") as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def bench_peak_rss_mib(bundle: str, domains: str, threads: int) -> float:
    return json.loads(subprocess.run(
        [sys.executable, "-m", "edgemode", "bench", bundle, "--domains", domains, "--prompt-tokens", str(PROMPT),
         "--new-tokens", str(NEW), "--repeat", "1", "--threads", str(threads), "--json"],
        check=True, capture_output=True, text=True).stdout)["peak_rss_mb"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--domains", nargs="+", default=["", "legal", "legal,med"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print("| bundle | quant | domains | predicted MiB | cold peak RSS MiB | error | warm peak RSS MiB | error |")
    print("|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for bundle in args.bundles:
        manifest = bundle_manifest.read(bundle)
        for domains in args.domains:
            names = [d for d in domains.split(",") if d]
            predicted = planner.plan(manifest.backbone, manifest.layout, len(names), manifest.quantization,
                                     PROMPT + NEW)["total_bytes"] / 2**20
            evict_from_page_cache(bundle)
            measured = [bench_peak_rss_mib(bundle, domains, args.threads) for _ in ("cold", "warm")]
            errors = [predicted / m - 1 for m in measured]
            worst = max(worst, *map(abs, errors))
            print(f"| {bundle} | {manifest.quantization['weights']} | {{{domains}}} | {predicted:.0f} | "
                  + " | ".join(f"{m:.0f} | {e * 100:+.1f}%" for m, e in zip(measured, errors)) + " |", flush=True)
    print(f"\nworst |error| {worst * 100:.1f}% (target <= 15%)")


if __name__ == "__main__":
    main()
