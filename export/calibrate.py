"""A bundle's KV-cache scales, calibrated through the runtime itself on the staged bundle.

Every attention layer's keys (after rotary) and values are read from an fp32 cache after prefilling
the calibration text, with no experts active and with all of them (a block's input, and so its
later layers' keys and values, depends on the experts before it), and the largest magnitude per KV
head and channel is kept (runtime/kv_scales.py says how a quantized cache uses it). A key's rotary
pair (d, d + head_dim/2) is rotated by its position, so both channels keep the pair's largest norm,
which bounds the pair at every position, not only the calibrated ones.
"""

from __future__ import annotations

import numpy as np

from edgemode.runtime import kv_scales
from edgemode.runtime.compose import compose

CHUNK = 256  # prefill chunk of the calibration passes


def _pair_norm(keys: np.ndarray) -> np.ndarray:
    half = keys.shape[-1] // 2
    norm = np.sqrt(keys[..., :half] ** 2 + keys[..., half:] ** 2)
    return np.concatenate([norm, norm], axis=-1)


def calibrate(engine, texts: list[np.ndarray]) -> dict[str, np.ndarray]:
    """component -> (layers, 2, kv_heads, kv_head_dim) absmax over `texts` (token id arrays), through
    `engine` (an fp32-KV Engine on the staged bundle); leaves the engine on no domains."""
    manifest = engine.manifest
    absmax = {}
    for active in ([], list(manifest.domains)) if manifest.domains else ([],):
        engine.set_domains(active)
        sources = kv_scales.layer_sources(compose(engine.bundle, manifest, manifest.domain_set(active), with_embedding=False))
        for ids in texts:
            cache = engine.new_cache(len(ids))
            for start in range(0, len(ids), CHUNK):
                engine.forward(ids[start:start + CHUNK], cache)
            for index, (component, layer) in enumerate(sources):
                keys, values = cache.layer(index)
                found = np.stack([_pair_norm(keys).max(axis=1), np.abs(values).max(axis=1)])
                layers = absmax.setdefault(component, {})
                layers[layer] = np.maximum(layers.get(layer, found), found)
    engine.set_domains([])
    return {component: np.stack([layers[i] for i in range(len(layers))]).astype(np.float32)
            for component, layers in absmax.items()}
