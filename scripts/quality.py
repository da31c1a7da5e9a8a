"""Quality report: held-out perplexity of the MoDE model per domain set and precision.

Rows: backbone only, {legal}, {med}, {legal,med}, each as an fp32 and an int4 bundle. Columns:
legal, med and general perplexity on the held-out split (documents of the training sources never
trained on) and on the unseen split (a source never trained on), the first --tokens tokens of each,
in 256-token windows, scored by the runtime. Prints a markdown table, the targets of issues 3 and
13, and a JSON line.

    python scripts/quality.py [MODEL_DIR] [--tokens 8192]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgemode.cache import cache_dir
from edgemode.demo import default_model_dir
from edgemode.export import export
from edgemode.runtime import Engine
from edgemode.runtime.perplexity import perplexity
from edgemode.train import data

CORPORA = ["legal", "med", "general"]
COLUMNS = [(c, part) for part in ("heldout", "unseen") for c in CORPORA]
ROWS = [[], ["legal"], ["med"], ["legal", "med"]]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", nargs="?", type=Path, default=default_model_dir())
    parser.add_argument("--tokens", type=int, default=8192, help="held-out tokens scored per corpus")
    parser.add_argument("--window", type=int, default=256)
    args = parser.parse_args()

    bundles = {}
    for quant in ("fp32", "int4"):
        bundles[quant] = cache_dir() / "bundles" / f"quality-{args.model_dir.name}-{quant}"
        export(args.model_dir, bundles[quant], ["legal", "med"], quant=quant, max_context=args.window)

    table = {}
    for quant, bundle in bundles.items():
        engine = Engine.load(bundle, [])
        texts = {f"{c} {part}": engine.encode(data.text(c, part))[: args.tokens] for c, part in COLUMNS}
        for domains in ROWS:
            engine.set_domains(domains)
            row = "{" + ",".join(domains) + "}"
            table[(row, quant)] = {k: perplexity(engine.logits, ids, args.window)["ppl"] for k, ids in texts.items()}
            print(f"{row:14s} {quant}: " + "  ".join(f"{k} {v:.3f}" for k, v in table[(row, quant)].items()),
                  file=sys.stderr, flush=True)

    print("| domains | quant | " + " | ".join(f"{c} {part}" for c, part in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for (row, quant), values in table.items():
        print(f"| {row} | {quant} | " + " | ".join(f"{v:.3f}" for v in values.values()) + " |")

    def change(row, column):
        return table[(row, "fp32")][column] / table[("{}", "fp32")][column] - 1

    checks = {}
    for part, gain in (("heldout", "-20%"), ("unseen", "-15%")):
        for domain in ("legal", "med"):
            checks[f"{domain} {part} with {{{domain}}} vs backbone (target <= {gain})"] = change(f"{{{domain}}}", f"{domain} {part}")
        checks[f"general {part} with {{legal,med}} vs backbone (target <= +2%)"] = change("{legal,med}", f"general {part}")
    checks["int4 vs fp32, worst cell (target <= +3%)"] = max(
        table[(r, "int4")][k] / table[(r, "fp32")][k] - 1 for r, q in table if q == "fp32" for k in table[(r, q)])
    print()
    for name, value in checks.items():
        print(f"- {name}: {value * 100:+.1f}%")
    print(json.dumps({"table": {f"{r} {q}": v for (r, q), v in table.items()}, "checks": checks}))


if __name__ == "__main__":
    main()
