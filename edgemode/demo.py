"""The built-in default: SmolLM2-135M with legal and medical experts, built once and cached.

`edgemode demo` runs the whole job on a fresh machine: fetch the backbone and corpora, train both
experts (stage 1) and compose them (stage 2) within fixed time budgets, export int4, and generate
a sample per domain. Every step is cached, so a second run only generates.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from edgemode.cache import cache_dir

DOMAINS = ["legal", "med"]
EXPERT_MINUTES = 9.0  # per expert; with compose, conversion and export the demo stays under 30 min
COMPOSE_MINUTES = 3.0
PROMPTS = {
    "legal": "Permission is hereby granted, free of charge, to any person",
    "med": "Abnormality of the kidney is",
}


def default_model_dir() -> Path:
    return cache_dir() / "models" / "default"


def default_bundle_dir() -> Path:
    return cache_dir() / "bundles" / "default-int4"


def build_default_model() -> Path:
    """The default model directory, trained within the time budgets (no-op when already built)."""
    from edgemode.model import create
    from edgemode.model.backbones import DEFAULT_BACKBONE
    from edgemode.train import data
    from edgemode.train.trainer import Schedule, compose, train_expert

    for corpus in DOMAINS + ["general"]:
        data.fetch(corpus)
    model_dir = default_model_dir()
    if not (model_dir / "mode.json").is_file():
        create(model_dir, DEFAULT_BACKBONE, DOMAINS, blocks=3, expert_layers=2, init="copy", seed=0)
    for domain in DOMAINS:
        train_expert(model_dir, domain, Schedule(minutes=EXPERT_MINUTES))
    compose(model_dir, DOMAINS, Schedule(minutes=COMPOSE_MINUTES))
    return model_dir


def run_demo() -> None:
    from edgemode.bundle import manifest as bundle_manifest
    from edgemode.export import export
    from edgemode.runtime import Engine

    started = time.time()
    model_dir = build_default_model()
    bundle = default_bundle_dir()
    if not (bundle / bundle_manifest.MANIFEST).is_file() or _newer(model_dir, bundle):
        export(model_dir, bundle, DOMAINS, quant="int4")
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
