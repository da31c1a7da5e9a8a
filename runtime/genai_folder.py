"""`edgemode genai`: a bundle as an onnxruntime-genai model folder, for apps on genai's bindings.

The folder holds one composed decoder per subset of the bundle's domains (decoder.onnx for the
backbone alone, decoder.legal.onnx, decoder.legal.med.onnx, ...), each a small graph whose weights
are the bundle's own data files, hard-linked into the folder; genai_config.json, which names the
default set; and the tokenizer. An app picks another set with a config overlay of the decoder's
file name: {"model": {"decoder": {"filename": "decoder.legal.onnx"}}}. genai counts the KV layers
from the graph's inputs, so the overlay needs nothing else. With an int8 or int4 KV cache every
decoder keeps that cache (the bundle's scales); genai sizes its buffers from the graph's inputs
(checked with onnxruntime-genai 0.18 in tests/test_genai.py).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
from pathlib import Path

from edgemode import EdgemodeError, os_error_text
from edgemode.bundle import directory, names
from edgemode.bundle import manifest as bundle_manifest
from edgemode.domains import DomainSet
from edgemode.kv import KVType, kv_type
from edgemode.runtime.compose import compose

CONFIG = "genai_config.json"
MAX_DOMAINS = 6  # one decoder graph per subset: 64 at most


def overlay(domains: list[str]) -> str:
    """The genai config overlay that selects the decoder of `domains`."""
    return json.dumps({"model": {"decoder": {"filename": names.composed_file(domains)}}})


def write(bundle: str | Path, out: str | Path, default_domains: list[str] | None = None,
          kv: str | KVType = "fp32") -> list[DomainSet]:
    """Write the folder for `bundle` at `out` (replaced atomically if it holds one), its decoders
    keeping a `kv` cache ("fp32", "int8" or "int4"); return the sets."""
    kv, bundle = kv_type(kv), Path(bundle)
    manifest = bundle_manifest.read(bundle)
    domains = manifest.domains
    default = manifest.domain_set(default_domains)
    if len(domains) > MAX_DOMAINS:
        raise EdgemodeError(f"the bundle has {len(domains)} domains; a genai folder holds a decoder per subset, "
                            f"so at most {MAX_DOMAINS} domains: export a bundle with fewer")
    data_files = [f for f in manifest.files if f.endswith(".data")]
    # The folder is what goes onto devices: every file it is made of is checked in full (sha256), the
    # graphs and the tokenizer here, the weights below as linked into it.
    bundle_manifest.verify(bundle, manifest, manifest.graph_files() + [manifest.tokenizer], full=True)
    out = Path(os.path.realpath(out))
    sets = [manifest.domain_set(s) for n in range(len(domains) + 1) for s in itertools.combinations(domains, n)]
    with directory.staged(out, CONFIG, "an onnxruntime-genai folder") as tmp:
        for file in data_files:
            _link(bundle_manifest.resolve(bundle, file), tmp / file)
        bundle_manifest.verify(tmp, manifest, data_files, full=True)
        for subset in sets:
            (tmp / names.composed_file(subset)).write_bytes(compose(bundle, manifest, subset, with_embedding=True, kv=kv).SerializeToString())
        tokenizer = json.loads(bundle_manifest.resolve(bundle, manifest.tokenizer).read_text())
        tokenizer, tokenizer_config = _genai_tokenizer(tokenizer, list(manifest.eos_token_ids))
        (tmp / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
        if tokenizer_config:
            (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
        (tmp / CONFIG).write_text(json.dumps(genai_config(manifest, default, tokenizer), indent=2) + "\n")
    return sets


def genai_config(manifest: bundle_manifest.Manifest, default: DomainSet, tokenizer: dict) -> dict:
    backbone, context = manifest.backbone, manifest.max_context
    eos, bos = list(manifest.eos_token_ids), _bos_id(tokenizer)
    return {
        "model": {
            "type": backbone.model_type,
            "context_length": context,
            "vocab_size": backbone.vocab_size,
            "bos_token_id": bos if bos is not None else (eos[0] if eos else 0),
            "eos_token_id": eos if len(eos) != 1 else eos[0],
            "pad_token_id": eos[0] if eos else 0,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": names.composed_file(default),
                "head_size": backbone.kv_head_dim,
                "hidden_size": backbone.hidden_size,
                "num_attention_heads": backbone.num_heads,
                "num_key_value_heads": backbone.kv_heads,
                "num_hidden_layers": manifest.layout.running_layers(len(default)),
                "inputs": {"input_ids": names.INPUT_IDS, "attention_mask": names.ATTENTION_MASK,
                           "past_key_names": names.PAST_KEY, "past_value_names": names.PAST_VALUE},
                "outputs": {"logits": names.LOGITS, "present_key_names": names.PRESENT_KEY,
                            "present_value_names": names.PRESENT_VALUE},
            },
        },
        "search": {"do_sample": False, "num_beams": 1, "num_return_sequences": 1, "max_length": context,
                   "min_length": 0, "past_present_share_buffer": True, "temperature": 1.0, "top_k": 1, "top_p": 1.0,
                   "repetition_penalty": 1.0, "early_stopping": True, "length_penalty": 1.0, "diversity_penalty": 0.0,
                   "no_repeat_ngram_size": 0},
    }


def _genai_tokenizer(tokenizer: dict, eos_ids: list[int]) -> tuple[dict, dict | None]:
    """tokenizer.json and tokenizer_config.json as genai's tokenizer (onnxruntime-extensions) reads
    them, for byte-level BPE tokenizers; other kinds it cannot read (config None: apps bring ids).

    Workaround of onnxruntime-extensions: a decoder step that replaces '▁' with a space (as
    transformers' GGUF conversion writes for SmolLM2) makes it tokenize as SentencePiece, which
    turns every space into three unknown ids. For a byte-level vocabulary that step never applies,
    so the byte-level decoder alone decodes the same.
    """
    model, pre = tokenizer.get("model") or {}, tokenizer.get("pre_tokenizer") or {}
    steps = [pre] + pre.get("pretokenizers", [])
    if model.get("type") != "BPE" or not any(p.get("type") == "ByteLevel" for p in steps):
        print("note: genai's tokenizer cannot read this tokenizer (not byte-level BPE); apps must tokenize themselves",
              file=sys.stderr)
        return tokenizer, None
    decoder = tokenizer.get("decoder") or {}
    byte_level = [d for d in [decoder] + decoder.get("decoders", []) if d.get("type") == "ByteLevel"]
    if byte_level:
        tokenizer = {**tokenizer, "decoder": byte_level[0]}
    token_of = {t["id"]: t["content"] for t in tokenizer.get("added_tokens", [])}
    config = {"tokenizer_class": "GPT2Tokenizer"}  # genai's name for byte-level BPE
    bos = _bos_id(tokenizer)
    if bos in token_of:
        config["bos_token"] = token_of[bos]
        # genai makes its tokenizer with add_special_tokens=false, whatever tokenizer_config.json says
        print(f"note: genai's tokenizer leaves out BOS {token_of[bos]!r} unless the app sets add_special_tokens to true "
              "(Python: tokenizer.update_options(add_special_tokens=\"true\"); C: OgaUpdateTokenizerOptions; "
              "examples/c/edgemode-app does)", file=sys.stderr)
    if eos_ids and eos_ids[0] in token_of:
        config["eos_token"] = token_of[eos_ids[0]]
    return tokenizer, config


def _bos_id(tokenizer: dict) -> int | None:
    """The special token the tokenizer's post-processor puts before every text, if any."""
    post = tokenizer.get("post_processor") or {}
    for processor in [post] + post.get("processors", []):
        single = processor.get("single") or [] if processor.get("type") == "TemplateProcessing" else []
        if single and "SpecialToken" in single[0]:
            return processor["special_tokens"][single[0]["SpecialToken"]["id"]]["ids"][0]
    return None


def _link(source: Path, target: Path) -> None:
    """Hard-link a weight file; copy it, saying so, where the file system cannot link."""
    try:
        os.link(source, target)
    except OSError as e:
        print(f"note: cannot hard-link {source.name} ({os_error_text(e)}); copying it", file=sys.stderr)
        shutil.copyfile(source, target)
