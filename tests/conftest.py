"""Tiny random Llama-family backbones and MoDE models built from transformers configs.

Three shapes cover the exporter's cases: grouped-query attention with untied embeddings (llama),
a head size GroupQueryAttention cannot take directly plus tied embeddings and q/k/v biases
(qwen2, head_dim 8), and sliding-window attention (mistral, window 4).
"""

from __future__ import annotations

import json
import string

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast
from transformers import Qwen2Config, Qwen2ForCausalLM

from edgemode.bundle.manifest import MANIFEST
from edgemode.model import store
from edgemode.model.mode import output_projections

SMALL = dict(vocab_size=300, intermediate_size=96, max_position_embeddings=256)
BACKBONES = {
    "llama": (LlamaForCausalLM, LlamaConfig(hidden_size=64, num_hidden_layers=5, num_attention_heads=4,
                                            num_key_value_heads=2, tie_word_embeddings=False, **SMALL)),
    "qwen2": (Qwen2ForCausalLM, Qwen2Config(hidden_size=48, num_hidden_layers=3, num_attention_heads=6,
                                            num_key_value_heads=2, tie_word_embeddings=True, **SMALL)),
    "mistral": (MistralForCausalLM, MistralConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                                  num_key_value_heads=1, sliding_window=4, **SMALL)),
}
DOMAINS = ["a", "b"]


def word_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a made-up vocabulary, so tests also cover a shipped tokenizer."""
    words = ["[UNK]", "</s>"] + [f"w{i}" for i in range(vocab_size - 2)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="</s>")


def bos_bpe_tokenizer() -> Tokenizer:
    """Byte-level BPE that puts BOS first, as SmolLM2's does: the kind genai's tokenizer reads. Trained
    on printable ASCII only, so every token is whole characters and a random model's text is the same
    however it is decoded (whole or streamed)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = ["Permission is hereby granted, free of charge, to any person obtaining a copy", string.printable[:95]]
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=200, special_tokens=["<s>", "</s>"], show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return tok


def bos_bpe_model(path):
    """A llama MoDE model under `path` (2 blocks, 1 random expert layer each, domains legal and med,
    mixing gates) whose backbone ships bos_bpe_tokenizer(): for onnxruntime-genai's own tokenizer
    (tests/test_app.py, scripts/arm64_check.py). Weights at init range 0.1, so BOS moves the logits."""
    tok = bos_bpe_tokenizer()
    config = LlamaConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                         vocab_size=tok.get_vocab_size(), intermediate_size=96, max_position_embeddings=256,
                         initializer_range=0.1, bos_token_id=tok.token_to_id("<s>"), eos_token_id=tok.token_to_id("</s>"))
    torch.manual_seed(0)
    LlamaForCausalLM(config).eval().save_pretrained(path / "backbone")
    tok.save(str(path / "backbone" / "tokenizer.json"))
    mode = store.create(path / "model", str(path / "backbone"), ["legal", "med"], blocks=2, expert_layers=1,
                        init="random", seed=0)
    randomize_gates(mode)
    store.save(mode, path / "model")
    return path / "model"


def make_backbone(kind: str, path, with_tokenizer: bool = True):
    cls, config = BACKBONES[kind]
    torch.manual_seed(0)
    model = cls(config).eval()
    model.save_pretrained(path)
    if with_tokenizer:
        word_tokenizer(config.vocab_size).save_pretrained(path)
    return model


def open_experts(mode) -> None:
    """Experts that really change their block: a new expert is the identity (zero output projections),
    so each expert layer's output projections take the values of the backbone layer it mirrors."""
    with torch.no_grad():
        for blocks in mode.experts.values():
            for layers, sources in zip(blocks, mode.layout.expert_sources):
                for layer, src in zip(layers, sources):
                    source = mode.backbone.model.layers[src]
                    for mine, theirs in zip(output_projections(layer), output_projections(source)):
                        mine.weight.copy_(theirs.weight)


def randomize_gates(mode, seed: int = 1) -> None:
    """Gates that really mix (zeros would weight everything equally), over experts that really change their block."""
    open_experts(mode)
    torch.manual_seed(seed)
    with torch.no_grad():
        for gate in mode.gates:
            torch.nn.init.normal_(gate.weight, std=0.3)
            torch.nn.init.normal_(gate.bias, std=0.5)


def edit_manifest(bundle, change):
    """Apply `change` to a bundle's manifest.json in place (the bundle's files are left as they are)."""
    path = bundle / MANIFEST
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def small_model(path):
    """A llama MoDE model of 2 blocks, 1 random expert layer each and mixing gates, under `path`."""
    make_backbone("llama", path / "backbone")
    mode = store.create(path / "model", str(path / "backbone"), DOMAINS, blocks=2, expert_layers=1, init="random")
    randomize_gates(mode)
    store.save(mode, path / "model")
    return path / "model"


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("edgemode")


@pytest.fixture(scope="session", params=list(BACKBONES))
def kind(request):
    return request.param


@pytest.fixture(scope="session")
def backbone_dir(workdir, kind):
    path = workdir / f"backbone-{kind}"
    make_backbone(kind, path, with_tokenizer=kind != "mistral")  # mistral gets the byte-level fallback
    return path


@pytest.fixture(scope="session")
def model_dir(workdir, kind, backbone_dir):
    """A MoDE model directory with two random experts and mixing gates."""
    path = workdir / f"model-{kind}"
    mode = store.create(path, str(backbone_dir), DOMAINS, blocks=2 if kind == "qwen2" else 3, expert_layers=2,
                        init="random", seed=0)
    randomize_gates(mode)
    store.save(mode, path)
    return path


@pytest.fixture(scope="session")
def reference(model_dir):
    return store.load(model_dir)


@pytest.fixture(scope="session")
def bundles(workdir, kind, model_dir):
    """fp32 and int4 bundles of the model, exported once per backbone kind."""
    from edgemode.export import export

    out = {}
    for quant in ("fp32", "int4"):
        out[quant] = workdir / f"bundle-{kind}-{quant}"
        export(model_dir, out[quant], quant=quant, max_context=128)
    return out
