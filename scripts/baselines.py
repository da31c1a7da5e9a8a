"""MoDE against LoRA and full fine-tuning in one harness, and the A/Bs that chose the training recipe.

Every method starts from the default backbone and sees the same corpora, steps and tokens
(batch 8 x 128 tokens, the trainer's batches):

    MoDE-1  each expert: --expert-steps on its domain (rehearsal rows, if any, are part of the batch)
    MoDE-2  the MoDE-1 experts, then --compose-steps of gate training on legal, med and general
    LoRA    (peft) 2 x --expert-steps on legal+med rows, then --compose-steps on legal, med, general;
            rank chosen so its trainable parameters match one expert's (layers + gate rows)
    full    the same batches as LoRA, every parameter trained

A/Bs: --rehearsal lists the stage-1 variants (MoDE-1 rows), --high-first the stage-2 schedules
(MoDE-2 rows, on the experts of --compose-on). Perplexity is PyTorch fp32 on the first --tokens
tokens of each held-out split (documents never trained on) and each unseen split (a source never
trained on), in 256-token windows. MoDE-1 scores a domain with its own expert; MoDE-2 scores
everything with {legal,med} active, one deployed set like the single LoRA or full model. Bytes on
device: MoDE's int4 expert graphs and full fine-tuning's second int4 model (embedding, layers and
head, from an int4 export of the MoDE-2 model), LoRA's adapter file as peft saves it (fp32).

Runs are cached and resumable under $EDGEMODE_CACHE/baselines/. Prints a markdown table and a JSON line.

    python scripts/baselines.py [--methods mode1,mode2,lora,full] [--tokens 2048]
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
from edgemode.demo import DOMAINS
from edgemode.model import create, load
from edgemode.model.backbones import DEFAULT_BACKBONE, load_backbone
from edgemode.runtime.perplexity import perplexity
from edgemode.train import recipe, trainer
from edgemode.train.trainer import Checkpoint, Schedule

COLUMNS = [(d, part) for d in DOMAINS + ["general"] for part in ("heldout", "unseen")]
LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LR = {"lora": 3e-4, "full": 5e-5}  # the experts' rate for LoRA; a usual full fine-tuning rate for the whole model


def log(message: str) -> None:
    print(f"baselines: {message}", file=sys.stderr, flush=True)


def scores(logits_fn, texts: dict, window: int = 256) -> dict:
    return {f"{d} {part}": perplexity(logits_fn(d), texts[(d, part)], window)["ppl"] for d, part in COLUMNS}


def mode_logits(mode, stage: int):
    def for_column(domain):
        active = [domain] if stage == 1 and domain in DOMAINS else DOMAINS

        def logits(ids):
            with torch.no_grad():
                return mode(torch.as_tensor(ids)[None], domains=active)[0].numpy()
        return logits
    return for_column


def hf_logits(model):
    def logits(ids):
        with torch.no_grad():
            return model(torch.as_tensor(ids)[None]).logits[0].numpy()
    return lambda domain: logits


def new_mode(folder: Path, backbone: str) -> Path:
    """An untrained MoDE model as the demo creates it."""
    if not (folder / "mode.json").is_file():
        create(folder, backbone, DOMAINS, blocks=3, expert_layers=2, init="copy", seed=0)
    return folder


def expert_params(mode) -> int:
    return sum(p.numel() for p in mode.experts[DOMAINS[0]].parameters()) + sum(g.weight.shape[1] + 1 for g in mode.gates)


def stage_one(root: Path, backbone: str, rehearsal: str, steps: int) -> Path:
    folder = new_mode(root / f"mode-{rehearsal}", backbone)
    for domain in DOMAINS:
        trainer.train_expert(folder, domain, Schedule(steps=steps, rehearsal=rehearsal))
    return folder


def stage_two(root: Path, backbone: str, rehearsal: str, high_first: float, expert_steps: int, steps: int) -> Path:
    folder = root / f"mode-{rehearsal}-high{high_first:g}"
    if not folder.is_dir():
        shutil.copytree(stage_one(root, backbone, rehearsal, expert_steps), folder)
    trainer.compose(folder, DOMAINS, Schedule(steps=steps, high_first=high_first))
    return folder


def fine_tune(root: Path, backbone_name: str, method: str, rank: int, expert_steps: int, compose_steps: int):
    """LoRA or full fine-tuning of the backbone on the MoDE runs' corpora, steps and tokens."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = root / method
    backbone, _ = load_backbone(backbone_name)
    model_dir = new_mode(root / "mode-none", backbone_name)  # for its tokenizer: every run tokenizes alike
    sources = {name: trainer.tokens(model_dir, name) for name in DOMAINS + ["general"]}
    schedule = Schedule(steps=2 * expert_steps + compose_steps, lr=LR[method])

    def next_batch(step):
        names = DOMAINS if step < 2 * expert_steps else DOMAINS + ["general"]
        return trainer.batch([sources[n] for n in names], schedule, step)

    torch.manual_seed(schedule.seed)  # LoRA's A matrices
    model = get_peft_model(backbone, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                                target_modules=LINEAR)) if method == "lora" else backbone
    params = [p for p in model.parameters() if p.requires_grad]

    class Plain(torch.nn.Module):  # the trainer's loop calls model(ids, domains=...)
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, ids, domains=None):
            return self.model(ids).logits

    save = (lambda: model.save_pretrained(folder)) if method == "lora" else (lambda: model.save_pretrained(folder / "model"))
    trainer.train_loop(Plain(), params, [], next_batch, [], schedule, Checkpoint(folder, method, schedule), save,
                       method, None)
    if method == "lora":  # reload what was saved: an already-finished run trains nothing in this process
        trained = PeftModel.from_pretrained(load_backbone(backbone_name)[0], folder).eval()
        added = (folder / "adapter_model.safetensors").stat().st_size
    else:
        trained = AutoModelForCausalLM.from_pretrained(folder / "model", dtype=torch.float32).eval()
        added = None
    return trained, sum(p.numel() for p in params), added


def int4_bytes(model_dir: Path) -> dict:
    """Bytes of an int4 export of `model_dir`: its experts' files, and its embedding, backbone and head
    files (what a fully fine-tuned copy of the model adds; the tokenizer is shared)."""
    from edgemode.export import export

    bundle = model_dir.with_name(model_dir.name + "-int4")
    if not (bundle / bundle_manifest.MANIFEST).is_file():
        export(model_dir, bundle, DOMAINS, quant="int4")
    files = bundle_manifest.read(bundle).files
    def size(*prefixes):
        return sum(f.bytes for name, f in files.items() if name.startswith(prefixes))
    return {"experts": size("expert."), "model": size("embedding.", "backbone.", "head.")}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="mode1,mode2,lora,full")
    parser.add_argument("--rehearsal", default=",".join(recipe.REHEARSAL), help="stage-1 variants (MoDE-1 rows)")
    parser.add_argument("--high-first", default="0,0.5", help="stage-2 schedules (MoDE-2 rows)")
    parser.add_argument("--compose-on", default=recipe.DEFAULT_REHEARSAL, help="the stage-1 variant MoDE-2 builds on")
    parser.add_argument("--expert-steps", type=int, default=recipe.EXPERT_STEPS)
    parser.add_argument("--compose-steps", type=int, default=recipe.COMPOSE_STEPS)
    parser.add_argument("--tokens", type=int, default=2048, help="tokens scored per text")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--root", type=Path, default=cache_dir() / "baselines", help="where the runs are kept")
    args = parser.parse_args()
    methods, root = args.methods.split(","), args.root

    reference = load(new_mode(root / "mode-none", args.backbone))
    texts = {(d, part): trainer.tokens(root / "mode-none", d, part)[: args.tokens] for d, part in COLUMNS}
    rows = {"backbone": {**scores(hf_logits(reference.backbone), texts), "trainable": 0, "bytes": 0}}
    log(f"backbone: {rows['backbone']}")
    one_expert = expert_params(reference)
    sizes = None

    def mode_row(name, folder, stage):
        nonlocal sizes
        mode = load(folder)
        row = {**scores(mode_logits(mode, stage), texts), "trainable": len(DOMAINS) * one_expert}
        if stage == 2 and sizes is None:
            sizes = int4_bytes(folder)
        row["bytes"] = sizes["experts"] if stage == 2 else None
        rows[name] = row
        log(f"{name}: {row}")

    if "mode1" in methods:
        for rehearsal in args.rehearsal.split(","):
            mode_row(f"MoDE-1, rehearsal {rehearsal}", stage_one(root, args.backbone, rehearsal, args.expert_steps), 1)
    if "mode2" in methods:
        for high_first in map(float, args.high_first.split(",")):
            folder = stage_two(root, args.backbone, args.compose_on, high_first, args.expert_steps, args.compose_steps)
            mode_row(f"MoDE-2, rehearsal {args.compose_on}, high-first {high_first:g}", folder, 2)
    rank = round(one_expert / sum(m.in_features + m.out_features for n, m in reference.backbone.named_modules()
                                  if n.split(".")[-1] in LINEAR))
    for method in ("lora", "full"):
        if method in methods:
            model, trainable, added = fine_tune(root, args.backbone, method, rank, args.expert_steps, args.compose_steps)
            if added is None:
                added = sizes["model"] if sizes else None
            name = f"LoRA r={rank}" if method == "lora" else "full fine-tuning"
            rows[name] = {**scores(hf_logits(model), texts), "trainable": trainable, "bytes": added}
            log(f"{name}: {rows[name]}")

    base = rows["backbone"]
    print("| method | " + " | ".join(f"{d} {part}" for d, part in COLUMNS) + " | trainable params | bytes on device |")
    print("|---|" + "---|" * (len(COLUMNS) + 2))
    for name, row in rows.items():
        cells = [f"{row[f'{d} {p}']:.2f}" + ("" if name == "backbone" else f" ({row[f'{d} {p}'] / base[f'{d} {p}'] - 1:+.1%})")
                 for d, p in COLUMNS]
        size = "" if row["bytes"] is None else f"{row['bytes'] / 1e6:.1f} MB"
        print(f"| {name} | " + " | ".join(cells) + f" | {row['trainable'] / 1e6:.1f} M | {size} |")
    print(json.dumps({"tokens": args.tokens, "rows": rows}))


if __name__ == "__main__":
    main()
