"""MoDE against LoRA and full fine-tuning, update-matched: the tables, sweeps and curve of docs/QUALITY.md.

Every method starts from the backbone and trains on the same batches (the trainer's: 8 x 128 tokens
seeded by step, the same rehearsal policy), so each makes the same number of optimizer updates on
the same rows:

  one domain   MoDE-1, LoRA-1, full-1: --steps updates on one domain's stage-1 batches. MoDE-1 trains the
               domain's expert and its gate row; LoRA-1 one adapter of rank matched to one expert; full-1
               every weight. Scored with that one model (MoDE-1 with its expert active).
  two domains  MoDE-2: both MoDE-1 experts, then --compose-steps of composition (gates only). LoRA-2 and
               full-2: the same stage-1 batches of both domains interleaved (legal, med, legal, ...), then the
               same composition batches: 2 x --steps + --compose-steps updates for every method. Scored
               with one configuration for every column ({legal,med} for MoDE-2).

Learning rates: each one-domain method is trained on the first domain at the three rates of RATES for
--sweep-steps updates and keeps the one with the lowest perplexity on the validation split (the held-out split's last --tokens
tokens, which no table reports); every other run uses the kept rate. --curve scores the kept one-domain
runs after more steps as well (one run extended: N steps then M more are the same bits as N + M).

Perplexity: PyTorch fp32 on the first --tokens tokens of each held-out split (documents of the training
sources never trained on) and unseen split (a source never trained on), in 256-token windows. Bytes on
device: a MoDE expert's int4 graphs and a fully fine-tuned model's int4 embedding, layers and head (from
an int4 export of the MoDE-2 model), a LoRA adapter as peft saves it (fp32).

--two and --compare-on leave out the costliest rows (LoRA-2 and full-2; LoRA-1 and full-1 on the other
domains) when time is short. Runs are cached and resumable under --root. Prints markdown tables and a JSON line; --plot writes the curve.

    python scripts/baselines.py [--steps 50] [--sweep-steps 20] [--two mode] [--curve 100] [--plot docs/scaling.png]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from edgemode.bundle import manifest as bundle_manifest
from edgemode.cache import cache_dir
from edgemode.demo import DOMAINS, MODEL_SHAPE
from edgemode.model import create, load
from edgemode.model.backbones import DEFAULT_BACKBONE, load_backbone
from edgemode.runtime.perplexity import perplexity
from edgemode.train import recipe, trainer
from edgemode.train.trainer import Checkpoint, Rehearsal, Schedule

PARTS = ("heldout", "unseen")
LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RATES = {"mode": (3e-4, 1e-3, 3e-3), "lora": (3e-4, 1e-3, 3e-3), "full": (3e-5, 1e-4, 3e-4)}
LABELS = {"mode": "MoDE", "lora": "LoRA", "full": "full fine-tuning"}


def log(message: str) -> None:
    print(f"baselines: {message}", file=sys.stderr, flush=True)


class Harness:
    """The texts, the backbone's scores and where runs are kept."""

    def __init__(self, root: Path, backbone: str, tokens: int, steps: int, compose_steps: int, rehearsal: str):
        self.root, self.backbone, self.steps, self.compose_steps = root, backbone, steps, compose_steps
        self.rehearsal = rehearsal
        reference = self.mode_dir("reference")  # an untrained model: the tokenizer, and the backbone's scores
        self.texts = {f"{c} {part}": trainer.tokens(reference, c, part)[:tokens]
                      for c in DOMAINS + ["general"] for part in PARTS}
        self.texts.update({f"{d} valid": trainer.tokens(reference, d, "heldout")[-tokens:] for d in DOMAINS})
        if len(trainer.tokens(reference, DOMAINS[0], "heldout")) < 2 * tokens:
            raise SystemExit(f"--tokens {tokens}: the held-out split is too short for separate reported and validation tokens")
        mode = load(reference)
        self.sources = {c: trainer.tokens(reference, c) for c in DOMAINS + ["general"]}
        self.one_expert = sum(p.numel() for p in mode.experts[DOMAINS[0]].parameters()) + sum(
            g.weight.shape[1] + 1 for g in mode.gates)
        self.rank = round(self.one_expert / sum(m.in_features + m.out_features for n, m in mode.backbone.named_modules()
                                                 if n.split(".")[-1] in LINEAR))
        self.base = self.scored(reference / "backbone-scores.json", lambda: hf_logits(mode.backbone))

    def mode_dir(self, name: str) -> Path:
        folder = self.root / name
        if not (folder / "mode.json").is_file():
            create(folder, self.backbone, DOMAINS, **MODEL_SHAPE)
        return folder

    def schedule(self, steps: int, lr: float) -> Schedule:
        return Schedule(steps=steps, lr=lr, rehearsal=self.rehearsal)

    def stage_one_batch(self, domain: str, step: int) -> torch.Tensor:
        """The domain rows of stage 1's batch `step` for `domain` (train_expert's; rehearsal rows come on top)."""
        schedule = self.schedule(1, 1.0)  # batches depend on the seed, batch and sequence sizes only
        rows = schedule.batch - (schedule.rehearsal_rows if self.rehearsal != "none" else 0)
        return trainer.batch([self.sources[domain]], schedule, step, rows)

    def scored(self, path: Path, logits) -> dict:
        """Perplexity of every text (cached in `path`); `logits()` makes the scorer only when needed."""
        if not path.is_file():
            score = logits()
            path.write_text(json.dumps({name: perplexity(score, ids, 256)["ppl"] for name, ids in self.texts.items()}))
        return json.loads(path.read_text())


def mode_logits(mode, active):
    def logits(ids):
        with torch.no_grad():
            return mode(torch.as_tensor(ids)[None], domains=active)[0].numpy()
    return logits


def hf_logits(model):
    def logits(ids):
        with torch.no_grad():
            return model(torch.as_tensor(ids)[None]).logits[0].numpy()
    return logits


class Plain(torch.nn.Module):
    """A Hugging Face model behind the trainer's call, model(ids, domains=...)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, domains=None, gate_weights=None):
        return self.model(ids).logits


def mode_one(h: Harness, domain: str, lr: float, steps: int) -> dict:
    """MoDE-1: `domain`'s expert after `steps` updates at `lr`; its file kept per step count for MoDE-2."""
    folder = h.mode_dir(f"mode1-{domain}-lr{lr:g}")
    snapshot = folder / "snapshots" / f"{domain}-{steps}.safetensors"
    if not snapshot.is_file():
        trainer.train_expert(folder, domain, h.schedule(steps, lr))
        snapshot.parent.mkdir(exist_ok=True)
        shutil.copyfile(folder / "experts" / f"{domain}.safetensors", snapshot)
    scores = h.scored(folder / f"scores-{steps}.json", lambda: mode_logits(load(folder), [domain]))
    return {**scores, "trainable": h.one_expert, "snapshot": snapshot}


def fine_tune(h: Harness, method: str, name: str, lr: float, steps: int, next_batch, policy=None):
    """LoRA or full fine-tuning for `steps` updates of `next_batch(step)` (plus `policy`'s rehearsal rows,
    made by `policy(backbone, state)`), resumed from its saved weights."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = h.root / name
    row_file = folder / f"row-{steps}.json"
    if row_file.is_file():  # a run only grows: what it scored at fewer steps is kept
        return json.loads(row_file.read_text())
    schedule = h.schedule(steps, lr)
    checkpoint = Checkpoint(folder, method, schedule)
    progress = checkpoint.read()
    torch.manual_seed(schedule.seed)  # LoRA's A matrices
    backbone = load_backbone(h.backbone)[0]
    # mix-cd bins the pool by the backbone's losses: taken before any trained weight is loaded
    rehearsal = policy(Plain(backbone), (progress or {}).get("rehearsal")) if policy and h.rehearsal != "none" else None
    if method == "lora":
        model = (PeftModel.from_pretrained(backbone, folder, is_trainable=True) if progress else
                 get_peft_model(backbone, LoraConfig(r=h.rank, lora_alpha=2 * h.rank, lora_dropout=0.0, target_modules=LINEAR)))
        save = lambda: model.save_pretrained(folder)  # noqa: E731
    else:
        model = AutoModelForCausalLM.from_pretrained(folder / "model", dtype=torch.float32) if progress else backbone
        save = lambda: model.save_pretrained(folder / "model")  # noqa: E731
    params = [p for p in model.parameters() if p.requires_grad] if method == "lora" else list(model.parameters())
    if not progress or progress["step"] < steps:
        trainer.train_loop(Plain(model), [(params, lr)], [], next_batch, [], schedule, checkpoint, save, name, None,
                           rehearsal)
    model.eval()
    row = h.scored(folder / f"scores-{steps}.json", lambda: hf_logits(model))
    row["trainable"] = sum(p.numel() for p in params)
    if method == "lora":
        row["bytes"] = (folder / "adapter_model.safetensors").stat().st_size
    row_file.write_text(json.dumps(row))
    return row


def one_domain(h: Harness, method: str, domain: str, lr: float, steps: int) -> dict:
    if method == "mode":
        return mode_one(h, domain, lr, steps)
    return fine_tune(h, method, f"{method}1-{domain}-lr{lr:g}", lr, steps, lambda step: h.stage_one_batch(domain, step),
                     lambda model, state: Rehearsal(model, h.sources["general"], h.schedule(steps, lr), state))


class Interleaved:
    """Rehearsal for LoRA-2 and full-2: stage-1 step i of domain d is their step 2i + d, and gets the rows
    d's own policy picks (each policy sees the losses of the rows it picked); composition steps get none."""

    def __init__(self, policies: list[Rehearsal], stage_one: int):
        self.policies, self.stage_one, self.pool = policies, stage_one, policies[0].pool

    def pick(self, step):
        self.step = step
        return self.policies[step % 2].pick(step // 2) if step < self.stage_one else np.zeros(0, np.int64)

    def observe(self, picked, losses):
        if len(picked):
            self.policies[self.step % 2].observe(picked, losses)

    def state(self):
        return {"interleaved": [p.state() for p in self.policies]}


def two_domains(h: Harness, method: str, lr: float, snapshots: dict | None = None) -> dict:
    """MoDE-2 (from the MoDE-1 experts' `snapshots`), or LoRA-2 / full-2 on the same batches in one run."""
    compose = Schedule(steps=h.compose_steps)
    if method == "mode":
        folder = h.root / f"mode2-{h.steps}-lr{lr:g}"
        if not (folder / "mode.json").is_file():
            h.mode_dir(folder.name)
            for domain, snapshot in snapshots.items():
                shutil.copyfile(snapshot, folder / "experts" / f"{domain}.safetensors")
        trainer.compose(folder, DOMAINS, compose)
        scores = h.scored(folder / f"scores-{h.compose_steps}.json", lambda: mode_logits(load(folder), DOMAINS))
        return {**scores, "trainable": len(DOMAINS) * h.one_expert, "folder": folder}
    stage_one = 2 * h.steps

    def next_batch(step):
        if step < stage_one:  # the experts' batches, interleaved: legal 0, med 0, legal 1, ...
            return h.stage_one_batch(DOMAINS[step % 2], step // 2)
        return trainer.batch([h.sources[c] for c in DOMAINS + ["general"]], compose, step - stage_one)

    def policy(model, state):
        schedule = h.schedule(h.steps, lr)
        return Interleaved([Rehearsal(model, h.sources["general"], schedule, (state or {}).get("interleaved", [None] * 2)[i])
                            for i in range(2)], stage_one)

    return fine_tune(h, method, f"{method}2-{h.steps}-lr{lr:g}", lr, stage_one + h.compose_steps, next_batch, policy)


def int4_bytes(model_dir: Path) -> dict:
    """Bytes of an int4 export of `model_dir`: one expert's files, and the embedding, backbone and head
    (what a fully fine-tuned copy of the model adds; the tokenizer is shared)."""
    from edgemode.export import export

    bundle = model_dir.with_name(model_dir.name + "-int4")
    if not (bundle / bundle_manifest.MANIFEST).is_file():
        export(model_dir, bundle, DOMAINS, quant="int4")
    files = bundle_manifest.read(bundle).files

    def size(*prefixes):
        return sum(f.bytes for name, f in files.items() if name.startswith(prefixes))
    return {"expert": size(f"expert.{DOMAINS[0]}."), "model": size("embedding.", "backbone.", "head.")}


def change(row: dict, base: dict, column: str) -> str:
    """A score against the backbone's, as the tables print it: -12.3%."""
    return f"{row[column] / base[column] - 1:+.1%}"


def table(title: str, rows: dict, base: dict, columns: list[str]) -> list[str]:
    lines = [f"\n{title}\n", "| method | " + " | ".join(columns) + " | trainable params | bytes on device |",
             "|---|" + "---|" * (len(columns) + 2)]
    for name, row in {"backbone": {**base, "trainable": 0, "bytes": 0}, **rows}.items():
        cells = [f"{row[c]:.2f}" + ("" if name == "backbone" else f" ({change(row, base, c)})") for c in columns]
        size = f"{row['bytes'] / 1e6:.1f} MB" if row.get("bytes") is not None else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['trainable'] / 1e6:.1f} M | {size} |")
    return lines


def plot(path: Path, curve: dict, base: dict, domain: str, sizes: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, part in zip(axes, PARTS):
        column = f"{domain} {part}"
        for method, points in curve.items():
            steps = sorted(points)
            gains = [100 * (1 - points[s][column] / base[column]) for s in steps]
            size = f", {sizes[method] / 1e6:.0f} MB on device" if sizes.get(method) else ""
            ax.plot(steps, gains, marker="o", label=f"{LABELS[method]}{size}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.set_xlabel("optimizer updates (batches of 8 x 128 tokens)")
        ax.set_title(f"{domain} {part.replace('heldout', 'held-out')}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("perplexity reduction vs backbone (%)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=recipe.EXPERT_STEPS, help="updates per domain")
    parser.add_argument("--compose-steps", type=int, default=recipe.COMPOSE_STEPS)
    parser.add_argument("--rehearsal", default=recipe.DEFAULT_REHEARSAL, choices=recipe.REHEARSAL)
    parser.add_argument("--rates", default=None, help="method=rate,... to skip the sweep, e.g. mode=3e-4,lora=3e-4,full=3e-5")
    parser.add_argument("--sweep-steps", type=int, default=None,
                        help="score the sweep's rates after this many updates (default --steps); the kept rate's run goes on")
    parser.add_argument("--two", default=",".join(RATES), help="methods of the two-domain table (LoRA-2 and full-2 "
                        "cost 2 x --steps + --compose-steps updates each)")
    parser.add_argument("--compare-on", default=",".join(DOMAINS),
                        help="domains whose one-domain table has LoRA-1 and full-1 rows (MoDE-1 runs on every domain)")
    parser.add_argument("--curve", default="", help="more step counts to score the first domain's runs at, e.g. 60,240")
    parser.add_argument("--plot", type=Path, default=None, help="write the curve as a PNG here")
    parser.add_argument("--tokens", type=int, default=2048, help="tokens scored per text")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--root", type=Path, default=cache_dir() / "baselines", help="where the runs are kept")
    args = parser.parse_args()
    h = Harness(args.root, args.backbone, args.tokens, args.steps, args.compose_steps, args.rehearsal)
    first = DOMAINS[0]
    results = {"steps": args.steps, "compose_steps": args.compose_steps, "rehearsal": args.rehearsal, "base": h.base,
               "lora_rank": h.rank}

    sweep_steps = args.sweep_steps or args.steps
    if not 0 < sweep_steps <= args.steps:
        raise SystemExit(f"--sweep-steps must be between 1 and --steps ({args.steps}), got {sweep_steps}")
    two_methods = [m for m in RATES if m in args.two.split(",")]
    if "mode" not in two_methods or set(args.two.split(",")) - set(RATES):
        raise SystemExit(f"--two: methods among {','.join(RATES)}, mode included; got {args.two}")
    results["sweep_steps"] = sweep_steps
    points = sorted({args.steps, sweep_steps, *(int(s) for s in args.curve.split(",") if s)})
    rates, sweep = {}, {}
    given = dict(item.split("=") for item in args.rates.split(",")) if args.rates else {}
    valid = f"{first} valid"
    for method in RATES:
        candidates = [float(given[method])] if method in given else RATES[method]
        for lr in candidates:  # scored on the way at the curve's shorter points: a run only grows
            rows = [one_domain(h, method, first, lr, steps) for steps in points if steps <= sweep_steps]
            sweep.setdefault(method, {})[lr] = rows[-1]
        rates[method] = min(sweep[method], key=lambda lr: sweep[method][lr][valid])
        log(f"{method}: {valid} perplexity by rate "
            f"{ {lr: round(row[valid], 2) for lr, row in sweep[method].items()} }; kept {rates[method]:g}")
    results["sweep"] = {m: {f"{lr:g}": row[valid] for lr, row in s.items()} for m, s in sweep.items()}
    results["rates"] = rates

    compared = args.compare_on.split(",")
    if not set(compared) <= set(DOMAINS) or first not in compared:
        raise SystemExit(f"--compare-on: domains among {','.join(DOMAINS)}, {first} included; got {args.compare_on}")
    methods = {d: [m for m in RATES if m == "mode" or d in compared] for d in DOMAINS}
    one = {d: {m: one_domain(h, m, d, rates[m], args.steps) for m in methods[d]} for d in DOMAINS}
    two = {"mode": two_domains(h, "mode", rates["mode"], {d: one[d]["mode"]["snapshot"] for d in DOMAINS})}
    sizes = int4_bytes(two["mode"]["folder"])
    two.update({m: two_domains(h, m, rates[m]) for m in two_methods if m != "mode"})
    for d in DOMAINS:
        one[d]["mode"]["bytes"] = sizes["expert"]
        if "full" in one[d]:
            one[d]["full"]["bytes"] = sizes["model"]
    two["mode"]["bytes"] = len(DOMAINS) * sizes["expert"]
    if "full" in two:
        two["full"]["bytes"] = sizes["model"]

    curve = {m: {steps: one_domain(h, m, first, rates[m], steps) for steps in points} for m in RATES}

    lines = []
    for d in DOMAINS:
        rows = {f"{LABELS[m]}-1" if m != "full" else "full fine-tuning": one[d][m] for m in methods[d]}
        lines += table(f"One domain, {d}: {args.steps} updates", rows, h.base,
                       [f"{d} heldout", f"{d} unseen", "general heldout", "general unseen"])
    rows = {"MoDE-2 {" + ",".join(DOMAINS) + "}" if m == "mode" else f"{LABELS[m]}-2": two[m] for m in two_methods}
    lines += table(f"Two domains: {len(DOMAINS)} x {args.steps} + {args.compose_steps} updates", rows, h.base,
                   [f"{c} {part}" for c in DOMAINS + ["general"] for part in PARTS])
    lines += [f"\nLearning-rate sweep ({first} valid perplexity, and {first} unseen against the backbone; "
              f"{sweep_steps} updates)\n",
              "| method | " + " | ".join(f"rate {i + 1}" for i in range(3)) + " | kept |", "|---|---|---|---|---|"]
    lines += [f"| {LABELS[m]} | " + " | ".join(f"{lr:g}: {row[valid]:.2f} ({change(row, h.base, f'{first} unseen')})"
                                              for lr, row in sweep[m].items()) + f" | {rates[m]:g} |" for m in RATES]
    lines += [f"\nScaling ({first}: perplexity change against the backbone)\n",
              "| updates | " + " | ".join(f"{LABELS[m]} {p}" for m in RATES for p in PARTS) + " |",
              "|---|" + "---|" * (2 * len(RATES))]
    for steps in sorted(curve["mode"]):
        lines.append(f"| {steps} | " + " | ".join(
            change(curve[m][steps], h.base, f"{first} {p}") for m in RATES for p in PARTS) + " |")
    print("\n".join(lines))
    if args.plot:
        lora_bytes = one[first]["lora"].get("bytes")
        plot(args.plot, curve, h.base, first, {"mode": sizes["expert"], "lora": lora_bytes, "full": sizes["model"]})
        log(f"wrote {args.plot}")
    clean = lambda row: {k: v for k, v in row.items() if k not in ("snapshot", "folder")}  # noqa: E731
    results.update(one={d: {m: clean(r) for m, r in rows.items()} for d, rows in one.items()},
                   two={m: clean(r) for m, r in two.items()},
                   curve={m: {s: clean(r) for s, r in points.items()} for m, points in curve.items()})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
