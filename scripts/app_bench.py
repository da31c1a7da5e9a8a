"""`edgemode bench` against examples/c/edgemode-app --bench on the same bundle and domain set.

    python scripts/app_bench.py BUNDLE --domains legal [--rounds 6] [--threads 2]

Writes the bundle's genai folder (a temporary directory), then runs the two benches alternately,
each in a fresh process with the same prompt length, new tokens, repeats and threads, and prints
per round both decode rates, their ratio (C / Python), TTFT, load time and peak RSS, and the load
average before the round (the machine is shared: only ratios within a round mean much). Build the
app first with `make app`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "examples" / "c" / "build" / os.uname().machine / "edgemode-app"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--domains", default="")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not APP.is_file():
        sys.exit(f"no {APP}: run `make app` first")
    common = ["--domains", args.domains, "--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(args.new_tokens),
              "--repeat", str(args.repeat), "--threads", str(args.threads)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "genai"
        subprocess.run([sys.executable, "-m", "edgemode", "genai", str(args.bundle), "-o", str(folder)], check=True,
                       capture_output=True)
        commands = {"python": [sys.executable, "-m", "edgemode", "bench", str(args.bundle), *common, "--json"],
                    "c": [str(APP), str(folder), "--bench", *common]}
        for name, argv in commands.items():
            print(f"{name}: {' '.join(argv)}")
        print(f"{'round':>5} {'load avg':>8} {'py tok/s':>9} {'C tok/s':>8} {'C/py':>6} {'py TTFT':>8} {'C TTFT':>7} "
              f"{'py load':>7} {'C load':>6} {'py RSS':>6} {'C RSS':>6}")
        ratios = []
        for i in range(args.rounds):
            load = os.getloadavg()[0]
            order = ["python", "c"] if i % 2 == 0 else ["c", "python"]  # alternate who goes first
            got = {name: json.loads(subprocess.run(commands[name], check=True, capture_output=True, text=True).stdout)
                   for name in order}
            py, c = got["python"], got["c"]
            ratios.append(c["decode_tok_s"] / py["decode_tok_s"])
            print(f"{i + 1:>5} {load:>8.2f} {py['decode_tok_s']:>9.1f} {c['decode_tok_s']:>8.1f} {ratios[-1]:>6.3f} "
                  f"{py['ttft_ms']:>8.1f} {c['ttft_ms']:>7.1f} {py['load_s']:>7.2f} {c['load_s']:>6.2f} "
                  f"{py['peak_rss_mb']:>6.0f} {c['peak_rss_mb']:>6.0f}", flush=True)
        print(f"decode C/python: median {statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f} "
              f"over {len(ratios)} rounds; load average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
