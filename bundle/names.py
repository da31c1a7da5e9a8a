"""The names every stage agrees on: graph files, graph inputs and outputs, KV inputs and outputs.

The exporter writes component graphs under these names, the runtime composes and feeds them, and
the onnxruntime-genai folder exposes them; nothing else spells them. Standard library only.

A bundle stores one graph per component. At run time the components of an active domain set are
composed into one decoder graph that follows onnxruntime-genai's decoder conventions, so the same
graph serves edgemode's runtime and genai's bindings.
"""

from __future__ import annotations

# Component graph files.
EMBEDDING_FILE, HEAD_FILE = "embedding.onnx", "head.onnx"
KV_SCALES_FILE = "kv_scales.npz"  # each attention layer's calibrated key and value ranges (runtime/kv_scales.py)
EVIDENCE_FILE = "evidence.npz"  # optional: `export --evidence`'s index of training passages (edgemode.explain.evidence)


def backbone_file(block: int) -> str:
    return f"backbone.block{block}.onnx"


def gates_file(block: int) -> str:
    return f"gates.block{block}.onnx"


def expert_file(domain: str, block: int) -> str:
    return f"expert.{domain}.block{block}.onnx"


def component(file: str) -> str:
    """'backbone.block0.onnx' -> 'backbone.block0': the name a component's graph and log lines use."""
    return file.removesuffix(".onnx")


# Component graph inputs and outputs.
HIDDEN, HIDDEN_OUT = "hidden", "hidden_out"  # a block's input and output; the head's input
GATE_LOGITS = "gate_logits"  # (batch, sequence, 1 + bundle domains): the backbone's column first
SEQLENS, TOTAL = "seqlens_k", "total_sequence_length"  # GroupQueryAttention's, fed by the composed graph


def component_kv(layer: int) -> tuple[str, str, str, str]:
    """past key, past value, present key, present value of a component's `layer`-th layer."""
    return f"past_key.{layer}", f"past_value.{layer}", f"present_key.{layer}", f"present_value.{layer}"


# The composed decoder: onnxruntime-genai's names.
INPUT_IDS, INPUTS_EMBEDS, ATTENTION_MASK, LOGITS = "input_ids", "inputs_embeds", "attention_mask", "logits"
LOGITS_TO_KEEP = "logits_to_keep"  # runtime variant only: logits for the last n positions, not all
PAST_KEY, PAST_VALUE = "past_key_values.%d.key", "past_key_values.%d.value"
# Trace variant only (runtime): per kept position, every block's gate weights over the backbone and
# the active experts, (batch, logits_to_keep, blocks, 1 + active), and the head's input after its norm.
GATE_WEIGHTS, FINAL_HIDDEN = "gate_weights", "final_hidden"
PRESENT_KEY, PRESENT_VALUE = "present.%d.key", "present.%d.value"


def composed_kv(layer: int) -> tuple[str, str, str, str]:
    return PAST_KEY % layer, PAST_VALUE % layer, PRESENT_KEY % layer, PRESENT_VALUE % layer


def composed_file(domains: list[str]) -> str:
    """The composed decoder of a domain set: 'decoder.onnx' for the backbone alone, else
    'decoder.legal.med.onnx' (domain names have no dots, so the set reads back unambiguously)."""
    return ".".join(["decoder", *domains, "onnx"])


BACKBONE = "backbone"  # the first gate column's label, before the active domains'

