"""A bundle's KV-cache scales (names.KV_SCALES_FILE) and the quantized GroupQueryAttention they set.

The file is an .npz with one float32 array per component graph with attention (backbone blocks and
experts), named by the component (names.component), shaped (layers, 2, kv_heads, kv_head_dim): for
each of its layers, the largest magnitude its keys [0] and values [1] took in calibration
(export/calibrate.py), per KV head and channel, as GroupQueryAttention caches them (keys after
rotary, head size padded). A key's two channels of a rotary pair (d, d + kv_head_dim/2) hold the
same value, the largest norm of the pair, which no rotation can exceed: the range holds at every
position, not only the calibrated ones.

A quantized cache (edgemode.kv) divides by scale = absmax / qmax per channel (PER_CHANNEL) and
rounds; a padded channel (always 0) gets a tiny positive scale. The file is small, so it is checked
in full (sha256) every time it is read.
"""

from __future__ import annotations

import io

import numpy as np

from edgemode.bundle import names
from edgemode.bundle.manifest import BundleError, Manifest, resolve, verify
from edgemode.kv import KVType

TINY = np.float32(1e-12)  # the scale of a channel that is always 0 (padding): any positive value quantizes 0 to 0


def write(path, absmax: dict[str, np.ndarray]) -> None:
    """Save `absmax` (component -> (layers, 2, kv_heads, kv_head_dim)) as the bundle's scales file."""
    buffer = io.BytesIO()
    np.savez(buffer, **{component: np.asarray(a, np.float32) for component, a in sorted(absmax.items())})
    path.write_bytes(buffer.getvalue())


def read(bundle, manifest: Manifest) -> dict[str, np.ndarray]:
    """The scales file's absmax per component, after checking its sha256 and every array's shape."""
    name = manifest.kv_scales
    if name is None:
        raise BundleError("this bundle has no KV-cache scales (exported before edgemode quantized KV caches): "
                          "export it again for an int8 or int4 KV cache, or use --kv fp32")
    verify(bundle, manifest, [name], full=True)
    shape = manifest.backbone
    try:
        with np.load(resolve(bundle, name), allow_pickle=False) as data:
            absmax = {component: data[component] for component in data.files}
    except Exception as e:  # numpy's and zipfile's errors on a file that is not an npz
        raise BundleError(f"{name} is not readable KV-cache scales: {e}") from None
    layers = {names.component(f): len(block) for f, block in zip(manifest.graphs.backbone, manifest.layout.blocks)}
    layers |= {names.component(f): manifest.layout.expert_layers for files in manifest.graphs.experts.values() for f in files}
    for component, count in layers.items():
        a = absmax.get(component)
        if (a is None or a.dtype != np.float32 or a.shape != (count, 2, shape.kv_heads, shape.kv_head_dim)
                or not np.isfinite(a).all() or (a < 0).any()):
            raise BundleError(f"{name} has no valid scales for {component}: export the bundle again")
    return absmax


def layer_sources(model) -> list[tuple[str, int]]:
    """(component, its layer) of each KV layer of a composed decoder, in KV order: read from its
    GroupQueryAttention nodes, which compose names after their component and wires to present.N."""
    index = {}
    for node in model.graph.node:
        if node.op_type == "GroupQueryAttention":
            component = node.name.split("/")[0]
            index[node.output[1]] = (component, sum(c == component for c, _ in index.values()))
    return [index[names.composed_kv(layer)[2]] for layer in range(len(index))]


def quantize_attention(nodes, component: str, kv: KVType, absmax: dict[str, np.ndarray], P) -> list:
    """Make `component`'s GroupQueryAttention `nodes` (in layer order) keep a `kv` cache; return the
    scale initializers they read (`P`: onnx's protobuf classes)."""
    initializers = []
    for layer, node in enumerate(n for n in nodes if n.op_type == "GroupQueryAttention"):
        inputs = []
        for which, part in zip((0, 1), ("key", "value")):
            scale = np.maximum(absmax[component][layer, which], TINY) / np.float32(kv.qmax)
            name = f"{component}/kv_scale.{layer}.{part}"
            initializers.append(P.TensorProto(name=name, data_type=P.TensorProto.FLOAT, dims=[1, *scale.shape[:1], 1, scale.shape[1]],
                                              raw_data=scale.astype(np.float32).tobytes()))
            inputs.append(name)
        node.input[:] = [*node.input, *[""] * (12 - len(node.input))][:12] + inputs
        node.attribute.extend([P.AttributeProto(name="kv_cache_bit_width", type=P.AttributeProto.INT, i=kv.bits)] + [
            P.AttributeProto(name=f"{part}_quant_type", type=P.AttributeProto.STRING, s=b"PER_CHANNEL") for part in "kv"])
    return initializers
