"""Long context with each KV cache type: perplexity over whole 8k-token windows, and a needle test.

    python scripts/long_context.py [--bundle B] [--kv fp32,int8,int4] [--documents gdpr,india]
                                   [--lengths 2048,4096,8192] [--depths 10] [--skip perplexity|needle]
                                   [--plot docs/long-context.png]
    python scripts/long_context.py --merge RUN1.out RUN2.out ... [--plot docs/long-context.png]

Perplexity: the first --window tokens (default 8192, the model's window) of two long documents, run
as one sequence through the runtime (prefill in 256-token chunks, each attending to the cache the
previous ones left), scored on every position: the GDPR (legal training source, its articles in
order) and the Constitution of India (the legal unseen source), with S = {} and {legal,med}.

Needle: a passkey sentence ("The pass key is NNNNN. Remember it. NNNNN is the pass key.") at
--depths evenly spaced depths (0% to 100%) inside --lengths tokens of repeated filler, then "What is
the pass key? The pass key is"; greedy, 8 new tokens, S = {}; retrieved when the digits come back.
The passkey differs per depth (seeded), the filler is the passkey-retrieval filler of Mohtashami &
Jaggi (2023).

Prints markdown tables and a JSON line; --plot draws the needle grid per KV type. Every run is one
process, one sitting: timings are not reported here (see `edgemode bench --kv`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edgemode.demo import DOMAINS, default_bundle_dir
from edgemode.runtime import Engine

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
QUESTION = "\nWhat is the pass key? The pass key is"
CHUNK = 256
NEW_TOKENS = 8  # of the needle's answer


def long_documents() -> dict[str, str]:
    """key -> (name, text): each long document as one text, its articles in their order."""
    from edgemode.train import data

    sources = {s.name: s for part in data.SOURCES["legal"].values() for s in part}
    gdpr = [text for doc_id, text in sources["eu-regulations"].documents() if doc_id.startswith("eu-regulations/gdpr/")]
    india = [text for _, text in sources["india-constitution"].documents()]
    return {"gdpr": ("GDPR (legal, training source)", "\n\n".join(gdpr)),
            "india": ("Constitution of India (legal, unseen)", "\n\n".join(india))}


def window_nll(engine: Engine, ids: np.ndarray) -> float:
    """Mean negative log-likelihood of ids[1:] given everything before, in one cache."""
    cache = engine.new_cache(len(ids))
    total = 0.0
    for start in range(0, len(ids) - 1, CHUNK):
        chunk = ids[start:min(start + CHUNK, len(ids) - 1)]
        logits = engine.forward(chunk, cache).astype(np.float64)
        logits -= logits.max(-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        targets = ids[start + 1:start + 1 + len(chunk)]
        total -= log_probs[np.arange(len(chunk)), targets].sum()
    return total / (len(ids) - 1)


def needle_prompt(engine: Engine, length: int, depth: float, key: str) -> list[int]:
    """`length` tokens: filler with the passkey sentence at `depth` (0 to 1), then the question."""
    length = min(length, engine.max_context - NEW_TOKENS)  # room for the answer
    encode = lambda text: engine.tokenizer.encode(text, add_special_tokens=False).ids  # noqa: E731
    needle, question = encode(f" The pass key is {key}. Remember it. {key} is the pass key. "), encode(QUESTION)
    filler = encode(FILLER * (length // 10 + 1))
    room = length - len(needle) - len(question) - 1  # 1: the BOS the tokenizer puts first
    body = filler[:room]
    at = round(depth * room)
    while at > 0 and not engine.tokenizer.decode(body[at - 1:at]).endswith(" "):  # between sentences' words
        at -= 1
    prefix = engine.encode("")  # BOS, as the tokenizer adds it
    return prefix + body[:at] + needle + body[at:] + question


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None, help="default: the default model's int4 bundle")
    parser.add_argument("--kv", default="fp32,int8,int4")
    parser.add_argument("--window", type=int, default=8192)
    parser.add_argument("--lengths", default="2048,4096,8192")
    parser.add_argument("--depths", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--documents", default="gdpr,india", help="long documents to score: gdpr, india")
    parser.add_argument("--skip", choices=["perplexity", "needle"], default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="print the tables (and --plot) of earlier runs' outputs together, running nothing")
    args = parser.parse_args()
    bundle = args.bundle or default_bundle_dir()
    kv_types = args.kv.split(",")
    results = {"bundle": str(bundle), "perplexity": [], "needle": []}
    for output in args.merge or []:
        earlier = json.loads(output.read_text().strip().splitlines()[-1])
        results["perplexity"] += earlier["perplexity"]
        results["needle"] += earlier["needle"]
    skipped = {"perplexity", "needle"} if args.merge else {args.skip}

    if "perplexity" not in skipped:
        documents = {name: text for key, (name, text) in long_documents().items() if key in args.documents.split(",")}
        for kv in kv_types:
            engine = Engine.load(bundle, [], threads=args.threads, kv=kv)
            for name, text in documents.items():
                ids = np.array(engine.encode(text)[:args.window])
                for domains in ([], DOMAINS):
                    engine.set_domains(domains)
                    started = time.time()
                    nll = window_nll(engine, ids)
                    row = {"kv": kv, "document": name, "domains": domains, "tokens": len(ids), "ppl": float(np.exp(nll))}
                    results["perplexity"].append(row)
                    print(f"# {kv} {name} {{{','.join(domains)}}}: ppl {row['ppl']:.4f} over {len(ids)} tokens "
                          f"({time.time() - started:.0f} s)", flush=True)

    if "needle" not in skipped:
        depths = np.linspace(0, 1, args.depths)
        keys = [f"{k:05d}" for k in np.random.default_rng(0).integers(10_000, 100_000, args.depths)]
        for kv in kv_types:
            engine = Engine.load(bundle, [], threads=args.threads, kv=kv)
            for length in map(int, args.lengths.split(",")):
                for depth, key in zip(depths, keys):
                    prompt = needle_prompt(engine, length, depth, key)
                    answer = engine.tokenizer.decode(list(engine.generate_ids(prompt, NEW_TOKENS)))
                    row = {"kv": kv, "length": len(prompt), "depth": float(depth), "key": key, "answer": answer,
                           "retrieved": key in answer.replace(" ", "")}
                    results["needle"].append(row)
                    print(f"# needle {kv} {len(prompt)} tokens depth {depth:.2f}: {'yes' if row['retrieved'] else 'no '} "
                          f"{answer!r}", flush=True)

    print_tables(results, kv_types)
    if args.plot and results["needle"]:
        plot(results, kv_types, args.plot)
    print(json.dumps(results))


def print_tables(results: dict, kv_types: list[str]) -> None:
    if results["perplexity"]:
        rows = {(r["document"], tuple(r["domains"])): {} for r in results["perplexity"]}
        for r in results["perplexity"]:
            rows[r["document"], tuple(r["domains"])][r["kv"]] = r["ppl"]
        print(f"\n| text ({results['perplexity'][0]['tokens']} tokens) | domains | " + " | ".join(f"{k} KV" for k in kv_types) + " |")
        print("|---|---|" + "---|" * len(kv_types))
        for (document, domains), ppl in rows.items():
            base = ppl.get("fp32")
            cells = [f"{ppl[k]:.3f}" + (f" ({ppl[k] / base - 1:+.2%})" if base and k != "fp32" else "") for k in kv_types]
            print(f"| {document} | {{{','.join(domains)}}} | " + " | ".join(cells) + " |")
    if results["needle"]:
        lengths = sorted({r["length"] for r in results["needle"]})
        print("\n| KV | " + " | ".join(f"{n} tokens" for n in lengths) + " |")
        print("|---|" + "---|" * len(lengths))
        for kv in [k for k in kv_types if any(r["kv"] == k for r in results["needle"])]:
            cells = []
            for n in lengths:
                found = [r for r in results["needle"] if r["kv"] == kv and r["length"] == n]
                if not found:
                    cells.append("-")
                    continue
                missed = [f"{r['depth']:.0%}" for r in found if not r["retrieved"]]
                cells.append(f"{len(found) - len(missed)}/{len(found)}" + (f" (missed at {', '.join(missed)})" if missed else ""))
            print(f"| {kv} | " + " | ".join(cells) + " |")


def plot(results: dict, kv_types: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted({r["length"] for r in results["needle"]})
    depths = sorted({r["depth"] for r in results["needle"]})
    fig, axes = plt.subplots(1, len(kv_types), figsize=(3.2 * len(kv_types), 3), sharey=True)
    for ax, kv in zip(np.atleast_1d(axes), kv_types):
        grid = np.full((len(depths), len(lengths)), np.nan)
        for r in results["needle"]:
            if r["kv"] == kv:
                grid[depths.index(r["depth"]), lengths.index(r["length"])] = r["retrieved"]
        ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
        ax.set_title(f"{kv} KV")
        ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
        ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths])
        ax.set_xlabel("prompt tokens")
    np.atleast_1d(axes)[0].set_ylabel("needle depth")
    fig.suptitle("passkey retrieved (green) or not (red), greedy, S = {}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
