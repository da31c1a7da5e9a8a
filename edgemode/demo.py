"""The built-in default: SmolLM2-135M with legal and medical experts, built once and cached.

`edgemode demo` runs the whole job on a fresh machine: fetch the backbone and corpora, train both
experts (stage 1) and compose them (stage 2) for the recipe's step budgets (train/recipe.py), export
int4, and generate a sample per domain. Every step is cached, so a second run only generates. The
model directory is named by a hash of the recipe and the corpora, so changing either builds anew
instead of resuming a run made with other settings.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from edgemode.cache import cache_dir
from edgemode.train import recipe

DOMAINS = ["legal", "med"]
MODEL_SHAPE = {"blocks": 3, "expert_layers": 2, "init": "copy", "seed": 0}  # the default model's `create` settings
PROMPTS = {
    "legal": "Permission is hereby granted, free of charge, to any person",
    "med": "Abnormality of the kidney is",
}


def default_recipe() -> dict:
    """Everything that decides the default model's weights (the corpora are described by their meta.json)."""
    from edgemode.model.backbones import DEFAULT_BACKBONE
    from edgemode.train import data

    return {
        "backbone": DEFAULT_BACKBONE, "domains": DOMAINS, **MODEL_SHAPE,
        "expert": {"steps": recipe.EXPERT_STEPS, "rehearsal": recipe.DEFAULT_REHEARSAL, "lr": recipe.LR,
                   "gate_lr": recipe.GATE_LR},
        "compose": {"steps": recipe.COMPOSE_STEPS, "high_first": recipe.DEFAULT_HIGH_FIRST, "gate_lr": recipe.GATE_LR},
        "corpora": {c: json.loads((data.fetch(c) / "meta.json").read_text()) for c in DOMAINS + ["general"]},
    }


def default_model_dir() -> Path:
    digest = hashlib.sha256(json.dumps(default_recipe(), sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"default-{digest}"


def default_bundle_dir() -> Path:
    return cache_dir() / "bundles" / "default-int4"


def build_default_model() -> Path:
    """The default model directory, trained for the recipe's steps (no-op when already built)."""
    from edgemode.model import create
    from edgemode.train.trainer import Schedule, compose, train_expert

    settings, model_dir = default_recipe(), default_model_dir()
    if not (model_dir / "mode.json").is_file():
        create(model_dir, settings["backbone"], DOMAINS, blocks=settings["blocks"],
               expert_layers=settings["expert_layers"], init=settings["init"], seed=settings["seed"])
    for domain in DOMAINS:
        train_expert(model_dir, domain, Schedule(seed=settings["seed"], **settings["expert"]))
    compose(model_dir, DOMAINS, Schedule(seed=settings["seed"], **settings["compose"]))
    return model_dir


def run_demo() -> None:
    from edgemode.bundle import manifest as bundle_manifest
    from edgemode.export import export
    from edgemode.runtime import Engine
    from edgemode.train.data import calibration_texts

    started = time.time()
    model_dir = build_default_model()
    bundle = default_bundle_dir()
    if (not (bundle / bundle_manifest.MANIFEST).is_file() or _newer(model_dir, bundle)
            or bundle_manifest.read(bundle).kv_scales is None):  # exported before KV-cache scales
        export(model_dir, bundle, DOMAINS, quant="int4", calibration=calibration_texts())
    engine = Engine.load(bundle, [])
    for domain in DOMAINS:
        engine.set_domains([domain])
        print(f"\n[{domain}] {PROMPTS[domain]}", end="", flush=True)
        for piece in engine.generate(PROMPTS[domain], max_new_tokens=40):
            print(piece, end="", flush=True)
        print()
    print(f"\ndefault model: {model_dir}\nint4 bundle:   {bundle}\n({time.time() - started:.0f} s)", file=sys.stderr)


def _newer(model_dir: Path, bundle: Path) -> bool:
    """True when the model changed after the bundle was written."""
    model_time = max(p.stat().st_mtime for p in model_dir.rglob("*.safetensors"))
    return model_time > (bundle / "manifest.json").stat().st_mtime
