"""Quality report: held-out perplexity of the MoDE model per domain set and precision.

Rows: backbone only, {legal}, {med}, {legal,med}, each as an fp32 and an int4 bundle. Columns:
legal, med and general held-out perplexity (the first --tokens tokens of each held-out split, in
256-token windows, scored by the runtime). Prints a markdown table, the targets of issue 3, and
a JSON line.

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
        texts = {c: engine.encode(data.text(c, "heldout"))[: args.tokens] for c in CORPORA}
        for domains in ROWS:
            engine.set_domains(domains)
            row = "{" + ",".join(domains) + "}"
            table[(row, quant)] = {c: perplexity(engine.logits, texts[c], args.window)["ppl"] for c in CORPORA}
            print(f"{row:14s} {quant}: " + "  ".join(f"{c} {v:.3f}" for c, v in table[(row, quant)].items()),
                  file=sys.stderr, flush=True)

    print("| domains | quant | " + " | ".join(f"{c} ppl" for c in CORPORA) + " |")
    print("|---|---|" + "---|" * len(CORPORA))
    for (row, quant), values in table.items():
        print(f"| {row} | {quant} | " + " | ".join(f"{values[c]:.3f}" for c in CORPORA) + " |")

    base = table[("{}", "fp32")]
    checks = {
        "legal ppl with {legal} vs backbone (target <= -20%)": table[("{legal}", "fp32")]["legal"] / base["legal"] - 1,
        "med ppl with {med} vs backbone (target <= -20%)": table[("{med}", "fp32")]["med"] / base["med"] - 1,
        "general ppl with {legal,med} vs backbone (target <= +2%)": table[("{legal,med}", "fp32")]["general"] / base["general"] - 1,
        "int4 vs fp32, worst cell (target <= +3%)": max(
            table[(r, "int4")][c] / table[(r, "fp32")][c] - 1 for r, _ in table if _ == "fp32" for c in CORPORA),
    }
    print()
    for name, value in checks.items():
        print(f"- {name}: {value * 100:+.1f}%")
    print(json.dumps({"table": {f"{r} {q}": v for (r, q), v in table.items()}, "checks": checks}))


if __name__ == "__main__":
    main()
