"""One expert's A/B run: train a domain's expert with given settings and score it, the A/Bs of
docs/QUALITY.md behind train/recipe.py.

A fresh model (SmolLM2-135M, legal and med experts, the default layout) per run name; the expert is
trained for each of --steps in turn (a run only grows: N steps then M more are the same bits as
N + M) and scored after each, in PyTorch fp32, with only its expert active, on the first --tokens
tokens of its domain's and general text's held-out and unseen splits and on its domain's validation
split (the held-out split's last --tokens tokens). Prints one line per step count and keeps the
scores in ROOT/NAME/scores.json.

    python scripts/expert_ab.py NAME [--domain legal] [--steps 20,60] [--rehearsal none] [--gate-lr 3e-3]
                                     [--gate-init 0] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from baselines import mode_logits  # scripts/ is on the path when a script runs

from edgemode.cache import cache_dir
from edgemode.demo import DOMAINS, MODEL_SHAPE
from edgemode.model import create, load, store
from edgemode.model.backbones import DEFAULT_BACKBONE
from edgemode.runtime.perplexity import perplexity
from edgemode.train import recipe, trainer
from edgemode.train.trainer import Schedule


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the run's folder under --root")
    parser.add_argument("--domain", default=DOMAINS[0], choices=DOMAINS)
    parser.add_argument("--steps", default="60", help="step counts to score at, e.g. 20,60")
    parser.add_argument("--rehearsal", default="none", choices=recipe.REHEARSAL)
    parser.add_argument("--lr", type=float, default=recipe.LR)
    parser.add_argument("--gate-lr", type=float, default=recipe.GATE_LR)
    parser.add_argument("--gate-init", type=float, default=None, help="the experts' initial gate logit (default the model's)")
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=recipe.THREADS)
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--root", type=Path, default=cache_dir() / "expert-ab")
    args = parser.parse_args()

    folder = args.root / args.name
    if not (folder / "mode.json").is_file():
        mode = create(folder, args.backbone, DOMAINS, **MODEL_SHAPE)
        if args.gate_init is not None:
            with torch.no_grad():
                for gate in mode.gates:
                    gate.bias[1:] = args.gate_init
            store.save(mode, folder)
    domain = args.domain
    texts = {f"{c} {part}": trainer.tokens(folder, c, part)[: args.tokens]
             for c in (domain, "general") for part in ("heldout", "unseen")}
    texts[f"{domain} valid"] = trainer.tokens(folder, domain, "heldout")[-args.tokens:]

    def score(active):
        logits = mode_logits(load(folder), active)
        torch.set_num_threads(args.threads)
        return {name: perplexity(logits, ids, 256)["ppl"] for name, ids in texts.items()}

    base_file = args.root / f"backbone-{domain}-{args.tokens}.json"
    if not base_file.is_file():
        base_file.write_text(json.dumps(score([])))
    base = json.loads(base_file.read_text())
    scores_file = folder / "scores.json"
    results = json.loads(scores_file.read_text()) if scores_file.is_file() else {}
    for steps in (int(s) for s in args.steps.split(",")):
        if str(steps) not in results:
            schedule = Schedule(steps=steps, rehearsal=args.rehearsal, lr=args.lr, gate_lr=args.gate_lr)
            trainer.train_expert(folder, domain, schedule, threads=args.threads)
            results[str(steps)] = score([domain])
            scores_file.write_text(json.dumps(results, indent=1))
        print(f"{args.name} {steps} steps: " + "  ".join(
            f"{k} {v:.2f} ({v / base[k] - 1:+.1%})" for k, v in results[str(steps)].items()), flush=True)


if __name__ == "__main__":
    sys.exit(main())
