"""Opening PATH for `eval`, `explain` and `plan`: a bundle (the runtime) or a model directory (PyTorch).

`open_path` reads the manifest only: weights load when a domain set is first `use`d. Each kind says
what it can do besides scoring: `can_trace` (gate weights and hidden states per position),
`has_evidence` (an evidence index of training passages) and `can_concept_gradients`. A bundle
needs the runtime alone; a model directory imports torch when it is opened.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from edgemode import EdgemodeError, read_json
from edgemode.domains import DomainSet


class Bundle:
    """A bundle, scored by the runtime's engine."""

    can_trace, can_concept_gradients = True, False

    def __init__(self, path: Path, kv: str = "fp32"):
        from edgemode.bundle import manifest as bundle_manifest

        self.path, self.kv, self.manifest = path, kv, bundle_manifest.read(path)
        self.domains, self.shape, self.layout = self.manifest.domains, self.manifest.backbone, self.manifest.layout
        self.quantization = dict(self.manifest.quantization)
        self.context, self.context_name = self.manifest.max_context, "this bundle's context"
        self.has_evidence = self.manifest.evidence is not None
        self.engine = None

    def domain_set(self, requested) -> DomainSet:
        return self.manifest.domain_set(requested)

    def use(self, active) -> None:
        """Make `active` the domain set that `logits` scores with (loading the engine the first time)."""
        if self.engine is None:
            from edgemode.runtime import Engine

            self.engine = Engine.load(self.path, active, kv=self.kv)
        else:
            self.engine.set_domains(active)

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    def logits(self, ids) -> np.ndarray:
        return self.engine.logits(ids)

    def logits_with_trace(self, ids):
        return self.engine.logits_with_trace(ids)

    def evidence(self):
        from edgemode.explain import evidence

        return evidence.load_index(self.path)


class ModelDir:
    """A MoDE model directory (mode.json), scored by the PyTorch model."""

    can_trace, has_evidence, can_concept_gradients = False, False, True

    def __init__(self, path: Path):
        from edgemode.model import store

        self.path, self.manifest = path, store.read_manifest(path)
        self.domains, self.quantization = tuple(self.manifest["domains"]), None  # quantized only when exported
        self.context_name = "the backbone's context"
        self.mode, self.active = None, None

    @cached_property
    def config(self) -> dict:
        from edgemode.model.backbones import resolve

        return read_json(resolve(self.manifest["backbone"]["source"]) / "config.json")

    @property
    def shape(self):
        from edgemode.bundle.manifest import Shape

        return Shape.from_config(self.config)

    @property
    def layout(self):
        from edgemode.layout import Layout

        return Layout.from_json(self.manifest["layout"])

    @property
    def context(self) -> int:
        return self.config["max_position_embeddings"]

    def domain_set(self, requested) -> DomainSet:
        return DomainSet(self.domains, requested, "this model")

    def use(self, active) -> None:
        if self.mode is None:
            from edgemode.model import store

            self.mode = store.load(self.path)
        self.active = self.mode.check_domains(active)

    @cached_property
    def tokenizer(self):
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.path / "tokenizer.json"))

    def logits(self, ids) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.mode(torch.as_tensor(ids)[None], domains=self.active)[0].numpy()

    def concept_gradients(self, ids) -> np.ndarray:
        from edgemode.explain.concepts import gradients

        return gradients(self.mode, ids, self.active)


def open_path(path: str | Path, kv: str = "fp32") -> Bundle | ModelDir:
    """A model directory if PATH has a mode.json, else a bundle (refused with a one-line error if it
    is neither). `kv`: a bundle's KV cache type (edgemode/kv.py); a model directory runs PyTorch's
    fp32 cache only."""
    path = Path(path)
    if (path / "mode.json").is_file():
        if kv != "fp32":
            raise EdgemodeError(f"--kv {kv} applies to bundles; {path} is a model directory, which PyTorch runs with an "
                                "fp32 KV cache (export it to try a quantized one)")
        return ModelDir(path)
    return Bundle(path, kv)
