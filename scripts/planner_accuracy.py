"""Planner accuracy: predicted peak memory against `edgemode bench`'s measured peak RSS.

For each bundle and domain set, one fresh `edgemode bench --json` process per row (so its peak RSS
is that configuration's alone), and `edgemode plan` at the same KV length (prompt + new tokens).

    python scripts/planner_accuracy.py BUNDLE [BUNDLE ...] [--domains "" legal legal,med]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from edgemode.bundle import manifest as bundle_manifest
from edgemode.devices import planner

PROMPT, NEW = 128, 64


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--domains", nargs="+", default=["", "legal", "legal,med"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print("| bundle | quant | domains | predicted MiB | measured peak RSS MiB | error |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for bundle in args.bundles:
        manifest = bundle_manifest.read(bundle)
        for domains in args.domains:
            names = [d for d in domains.split(",") if d]
            measured = json.loads(subprocess.run(
                [sys.executable, "-m", "edgemode", "bench", bundle, "--domains", domains, "--prompt-tokens", str(PROMPT),
                 "--new-tokens", str(NEW), "--repeat", "1", "--threads", str(args.threads), "--json"],
                check=True, capture_output=True, text=True).stdout)
            predicted = planner.plan(planner.shape_of_bundle(manifest), len(names), manifest["quantization"],
                                     PROMPT + NEW)["total_bytes"] / 2**20
            error = predicted / measured["peak_rss_mb"] - 1
            worst = max(worst, abs(error))
            print(f"| {bundle} | {manifest['quantization']['weights']} | {{{domains}}} | {predicted:.0f} | "
                  f"{measured['peak_rss_mb']:.0f} | {error * 100:+.1f}% |", flush=True)
    print(f"\nworst |error| {worst * 100:.1f}% (target <= 15%)")


if __name__ == "__main__":
    main()
