"""Loading a backbone: a Hugging Face model directory, in fp32, with its tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from edgemode import EdgemodeError
from edgemode.model.mode import check_backbone_config


def byte_tokenizer() -> Tokenizer:
    """A byte-level tokenizer (ids 0-255) for backbones that ship without one, such as test models."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _tokenizer(path: Path, vocab_size: int) -> Tokenizer:
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # a missing tokenizer is expected here and handled below
    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, KeyError, TypeError):
        hf_tokenizer = None
    if hf_tokenizer is not None and hf_tokenizer.is_fast:
        return hf_tokenizer.backend_tokenizer
    if vocab_size < 256:
        raise EdgemodeError(f"backbone {path} has no fast tokenizer (tokenizer.json) and a vocabulary under 256")
    return byte_tokenizer()


def load_backbone(source: str):
    """(causal LM in fp32, eval mode; tokenizers.Tokenizer) from a Hugging Face model directory."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(source)
    if not (path / "config.json").is_file():
        raise EdgemodeError(f"backbone {source!r} is not a Hugging Face model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as e:
        raise EdgemodeError(f"cannot read backbone config in {source}: {e}") from None
    check_backbone_config(config)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    except (OSError, ValueError, RuntimeError) as e:
        raise EdgemodeError(f"cannot load backbone weights from {source}: {str(e).splitlines()[0]}") from None
    return model.eval(), _tokenizer(path, config.vocab_size)
