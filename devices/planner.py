"""The memory planner: what a MoDE bundle needs on a device, computed from shapes alone.

    total = weights (per component, at the bundle's precision; the embedding table stays on disk)
          + KV cache (every layer that runs, expert layers included, at the planned context and KV type)
          + activations (one prefill chunk) + runtime (interpreter, onnxruntime, tokenizer)

The runtime runs a domain set as one composed session. A switch releases the previous session
before it makes the next, so it needs no more than a load; only while a request still runs on the
previous set do both sessions stay resident, which `switch_bytes` (that set's weights and KV
cache, for a set of the same size) reports apart from the total.

Standard library only: the runtime uses it to refuse loads that would not fit, and nothing here
materialises weights, so 1.8B and 3.25B backbones plan instantly. The constants marked
"measured" come from `edgemode bench` (see scripts/planner_accuracy.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from edgemode import EdgemodeError
from edgemode.bundle.manifest import Shape
from edgemode.kv import FP32, KV_TYPES, KVType
from edgemode.layout import Layout

MB = 1024 * 1024
RUNTIME_BYTES = 80 * MB  # measured: peak RSS of `edgemode bench` on a bundle of under 1 MB
PREFILL_CHUNK = 32  # bounds prefill activations; measured on SmolLM2 int4 against 128: -6 MiB peak, +15-18% TTFT
INT4_PREPACK_FACTOR = 1.5  # measured: resident / file bytes of SmolLM2-135M's int4 graphs, 1.46-1.62


def layer_params(shape: Shape) -> int:
    """Weights of one decoder layer (attention at GroupQueryAttention's padded head size, and the MLP)."""
    attention = shape.hidden_size * shape.kv_head_dim * (2 * shape.num_heads + 2 * shape.kv_heads)
    return attention + 3 * shape.hidden_size * shape.intermediate_size


# Google has not published Nano's shapes: these are Llama-shaped stand-ins with Nano-1's 1.8B and
# Nano-2's 3.25B parameters (Gemini report, 2023). SmolLM2-135M is its real config.
SHAPES = {
    "nano-1": Shape(hidden_size=2048, num_layers=28, num_heads=16, kv_heads=8, head_dim=128, intermediate_size=8192,
                    vocab_size=32000),
    "nano-2": Shape(hidden_size=3072, num_layers=28, num_heads=24, kv_heads=8, head_dim=128, intermediate_size=9728,
                    vocab_size=32000),
    "smollm2-135m": Shape(hidden_size=576, num_layers=30, num_heads=9, kv_heads=3, head_dim=64, intermediate_size=1536,
                          vocab_size=49152),
}


def bytes_per_weight(quantization: Mapping, matrix: str = "decoder") -> float:
    """Resident bytes per weight of a `matrix`: "decoder" or "head".

    int4 bundles keep decoder weights at 4 bits with an fp32 scale and a 4-bit zero point per block,
    plus (for weights that started on a 4-bit grid, assumed here) one extra 4-bit row of block-mean
    corrections per block of rows; the vocabulary matrices at `vocab_bits`; missing keys take
    edgemode.quantize.Int4Config's defaults. onnxruntime prepacks MatMul weights for its int8 kernel
    at load, which costs INT4_PREPACK_FACTOR times their file size. The embedding table costs
    nothing: the runtime reads its rows from the bundle as needed (runtime/embedding.py).
    """
    if quantization.get("weights") == "fp32":
        return 4.0
    if quantization.get("weights") != "int4":
        raise EdgemodeError(f"unknown quantization {quantization!r}")
    block = quantization.get("block_size", 32)
    if not isinstance(block, int) or block < 16 or block & (block - 1):
        raise EdgemodeError(f"int4 block_size must be a power of 2 >= 16, got {block!r}")
    bits = quantization.get("vocab_bits", 8) if matrix == "head" else 4
    zero_point = 0 if quantization.get("symmetric", False) else bits / 8 / block
    stored = bits / 8 + 4 / block + zero_point
    if matrix == "decoder":
        stored *= 1 + 1 / block  # the correction rows
    return stored * INT4_PREPACK_FACTOR


def plan(shape: Shape, layout: Layout, domains: int, quantization: Mapping, context: int,
         budget_bytes: int | None = None, kv: KVType = FP32, window: int | None = None) -> dict:
    """Memory needed to run `domains` experts at `context` tokens with a `kv` cache, in graphs made
    for a `window` (default: `context`); with a budget, whether it fits."""
    if context < 2:
        raise EdgemodeError(f"the context must be at least 2 tokens, got {context}")
    bpw = bytes_per_weight(quantization)
    norms = 2 * shape.hidden_size * 4
    rotary = 2 * max(context, window or 0) * (shape.kv_head_dim // 2) * 4  # cos/sin caches, one pair per decoder graph
    layer = layer_params(shape) * bpw + norms
    blocks = len(layout.blocks)
    components = {
        "head": shape.vocab_size * shape.hidden_size * bytes_per_weight(quantization, "head") + shape.hidden_size * 4,
        "backbone": shape.num_layers * layer + blocks * rotary,
        "gates": blocks * shape.hidden_size * (1 + domains) * 4 if domains else 0,
        "experts": domains * blocks * (layout.expert_layers * layer + rotary),
    }
    kv_bytes = layout.running_layers(domains) * kv.layer_bytes(shape.kv_heads, shape.kv_head_dim, context)
    chunk = min(PREFILL_CHUNK, context)
    activations = 4 * (chunk * (3 * shape.intermediate_size + 6 * shape.hidden_size + shape.num_heads * context)
                       + shape.vocab_size)
    weights = sum(components.values())
    total = weights + kv_bytes + activations + RUNTIME_BYTES
    result = {
        "shape": Shape.to_json(shape), "layout": layout.to_json(), "domains": domains,
        "quantization": dict(quantization), "context": context, "kv": kv.name,
        "components": {k: int(v) for k, v in components.items()},
        "weights_bytes": int(weights), "kv_bytes": int(kv_bytes), "activation_bytes": int(activations),
        "runtime_bytes": RUNTIME_BYTES, "total_bytes": int(total),
        "switch_bytes": int(weights + kv_bytes),
    }
    if budget_bytes is not None:
        result.update(budget_bytes=budget_bytes, fits=total <= budget_bytes)
        if total > budget_bytes:
            result["suggestions"] = suggestions(shape, layout, domains, quantization, context, budget_bytes, kv, window)
    return result


def longest_context(shape: Shape, layout: Layout, domains: int, quantization: Mapping, kv: KVType, budget: int,
                    window: int) -> int:
    """The longest context up to `window` (the graphs' own) whose plan fits `budget` (memory grows
    with the context); 0 when not even 2 tokens fit."""
    fits = lambda c: plan(shape, layout, domains, quantization, c, kv=kv, window=window)["total_bytes"] <= budget  # noqa: E731
    if not fits(2):
        return 0
    low, high = 2, window  # fits(low); the answer is in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def suggestions(shape: Shape, layout: Layout, domains: int, quantization: Mapping, context: int, budget: int,
                kv: KVType = FP32, window: int | None = None) -> list[str]:
    """What would make it fit: fewer bits, a smaller KV type, a shorter context, or fewer domains."""
    def fits(d=domains, q=quantization, c=context, k=kv):
        return plan(shape, layout, d, q, c, kv=k, window=window)["total_bytes"] <= budget

    found = []
    if quantization.get("weights") != "int4" and fits(q={"weights": "int4", "block_size": 32}):
        found.append("quantize to int4 (export --quant int4)")
    smaller = [k for k in KV_TYPES.values() if k.bits < kv.bits and fits(k=k)]
    if smaller:
        found.append(f"an {smaller[0].name} KV cache (--kv {smaller[0].name})")
    c = context
    while c > 2 and not fits(c=c):
        c = max(2, c // 2)
    if c < context and fits(c=c):
        found.append(f"a context of {c} tokens (export --context {c})")
    d = domains
    while d > 0 and not fits(d=d):
        d -= 1
    if d < domains and fits(d=d):
        found.append(f"at most {d} domain(s) at once")
    return found or ["nothing short of a smaller backbone: even int4 with no experts and a 2-token context exceeds the budget"]
