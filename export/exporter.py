"""`edgemode export`: a MoDE model directory -> a bundle of per-component ONNX graphs.

The bundle is written into a temporary directory beside the target, checked against the PyTorch
model through the runtime itself, and only then moved into place in one rename. A crash at any
point leaves the previous bundle (if any) as it was, and nothing that loads as a bundle.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import external_data_helper

from edgemode import EdgemodeError
from edgemode.bundle import manifest as bundle_manifest
from edgemode.bundle import directory, names
from edgemode.devices import planner, profiles
from edgemode.export.calibrate import calibrate
from edgemode.export.graphs import decoder_graph, embedding_graph, gate_graph, head_graph, rotary_cache
from edgemode.kv import KV_TYPES
from edgemode.model import store
from edgemode.quantize import Int4Config, quantize_int4
from edgemode.runtime import kv_scales

CALIBRATION_TOKENS = 1024  # per calibration text: the first ones, tokenized as the bundle will
RANDOM_CALIBRATION = "random token ids (no calibration text given)"


# How close the bundle's logits must be to PyTorch's on the export's sample input.
# fp32: the largest |delta logit| over the largest |logit|: float rounding only (measured ~3e-7).
# int4: RMS(delta logits) / RMS(logits). This check catches broken graphs (unrelated logits give
# ~1.4), not quantization quality: weight-only int4 measured 0.11-0.29 on tiny random models and
# 0.02-0.03 on SmolLM2-135M with experts (quantize/int4.py). Real-text quality is in the README.
TOLERANCES = {"fp32": ("max_rel_error", 1e-4), "int4": ("rms_rel_error", 0.5)}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _save_graph(bundle: Path, name: str, model: onnx.ModelProto) -> None:
    onnx.save_model(model, str(bundle / name), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=name + ".data", size_threshold=0)


def _stored_weights(bundle: Path, name: str) -> dict:
    """sha256 -> (file, offset, length) of each weight graph `name` stores in the bundle."""
    stored = {}
    for tensor in onnx.load(str(bundle / name), load_external_data=False).graph.initializer:
        info = {e.key: e.value for e in tensor.external_data}
        offset, length = int(info.get("offset", 0)), int(info["length"])
        with open(bundle / info["location"], "rb") as f:
            f.seek(offset)
            stored[hashlib.sha256(f.read(length)).digest()] = (info["location"], offset, length)
    return stored


def _point_at_stored(model: onnx.ModelProto, stored: dict) -> None:
    """Make `model`'s weights whose bytes `stored` already holds point at that copy. With tied
    embeddings the quantized LM head is byte for byte the embedding's table, so the bundle keeps
    it once."""
    for tensor in model.graph.initializer:
        where = stored.get(hashlib.sha256(tensor.raw_data).digest())
        if where:
            external_data_helper.set_external_data(tensor, *where)
            tensor.data_location = onnx.TensorProto.EXTERNAL
            tensor.ClearField("raw_data")


def parity(engine, mode, domains: list[str], ids: np.ndarray) -> dict:
    """Bundle vs PyTorch logits on `ids`: relative max error and top-1 agreement."""
    engine.set_domains(domains)
    got = engine.logits(ids, chunk=max(1, len(ids) // 2))  # two chunks: prefill, then cached
    with torch.no_grad():
        want = mode(torch.as_tensor(ids)[None], domains=domains)[0].numpy()
    delta = got - want
    return {
        "max_abs_error": float(np.abs(delta).max()),
        "max_rel_error": float(np.abs(delta).max() / max(np.abs(want).max(), 1e-12)),
        "rms_rel_error": float(np.sqrt((delta**2).mean() / max((want**2).mean(), 1e-24))),
        "top1": float((got.argmax(-1) == want.argmax(-1)).mean()),
    }


def export(model_dir: str | Path, out: str | Path, domains: list[str] | None = None, quant: str | None = None,
           max_context: int | None = None, int4: Int4Config = Int4Config(), check: bool = True,
           device: str | None = None, evidence=None, calibration: list[tuple[str, str]] | None = None,
           ) -> bundle_manifest.Manifest:
    """Export `domains` (default: all of the model's) and return the manifest written.

    The bundle serves `max_context` tokens, by default the backbone's whole window. Its KV-cache
    scales (for an int8 or int4 cache, chosen when a domain set is loaded) are calibrated on
    `calibration`, (label, text) pairs: the first CALIBRATION_TOKENS tokens of each; without it, on
    random token ids, and a warning says so.

    With a `device`, its profile supplies the default quantization and context, and a
    configuration whose planned memory exceeds the device's budget is refused before anything is
    written. With `evidence` (an edgemode.explain.evidence_index.EvidenceIndex), the bundle also
    holds an evidence index of training passages; it is checked before any graph is built.
    """
    profile = profiles.load(device) if device else None
    quant = quant or (profile["quantization"]["weights"] if profile else "fp32")
    if quant not in TOLERANCES:
        raise EdgemodeError(f"--quant must be one of {', '.join(TOLERANCES)}, got {quant!r}")
    out = Path(os.path.realpath(out))  # through a symlink, replace what it points to and keep the link
    store.read_manifest(model_dir)  # not a model directory: say so before the slow load
    directory.check_target(out, bundle_manifest.MANIFEST, "a bundle")  # before the slow load; staged() checks again
    started = time.time()
    log(f"loading {model_dir}")
    mode = store.load(model_dir)
    domains = mode.check_domains(domains)
    backbone, layout, config = mode.backbone, mode.layout, mode.config
    shape = bundle_manifest.Backbone.from_config(config.to_dict(), fingerprint=mode.fingerprint, model_type=config.model_type)
    max_context = config.max_position_embeddings if max_context is None else max_context
    if isinstance(max_context, bool) or not isinstance(max_context, int):
        raise EdgemodeError(f"--context must be an integer, got {max_context!r}")
    if not 2 <= max_context <= config.max_position_embeddings:
        raise EdgemodeError(f"--context must be between 2 and the backbone's {config.max_position_embeddings}, got {max_context}")
    if profile:
        quantization = int4.to_json() if quant == "int4" else {"weights": "fp32"}
        smallest = KV_TYPES["int4"]  # the budget sets the context at load; refuse only what fits at no context
        needed = planner.plan(shape, layout, len(domains), quantization, 2, profile["budget_bytes"], smallest, max_context)
        if not needed["fits"]:
            raise EdgemodeError(
                f"{quant} with {len(domains)} domain(s) needs {needed['total_bytes'] / 2**20:.0f} MiB even at a 2-token "
                f"context with an {smallest.name} KV cache, over the {profile['profile']} budget of "
                f"{profile['budget_bytes'] / 2**20:.0f} MiB; nothing was written. Try {'; or '.join(needed['suggestions'])}"
            )
    rotary = rotary_cache(backbone, shape, max_context)
    rows = domains.columns
    if evidence is not None:
        evidence.prepare(domains)

    components = [(names.EMBEDDING_FILE, lambda n: embedding_graph(backbone)), (names.HEAD_FILE, lambda n: head_graph(backbone))]
    for b, block in enumerate(layout.blocks):
        layers = [backbone.model.layers[i] for i in block]
        components.append((names.backbone_file(b), lambda n, ls=layers, s=block: decoder_graph(n, backbone, ls, s, shape, rotary)))
        components.append((names.gates_file(b), lambda n, g=mode.gates[b]: gate_graph(n, g.weight[rows], g.bias[rows], g.eps)))
    for d in domains:
        for b, sources in enumerate(layout.expert_sources):
            components.append((names.expert_file(d, b), lambda n, d=d, b=b, s=sources: decoder_graph(n, backbone, mode.experts[d][b], s, shape, rotary)))

    with directory.staged(out, bundle_manifest.MANIFEST, "a bundle") as tmp:
        for i, (file, build) in enumerate(components, 1):
            graph = build(names.component(file))
            if quant == "int4" and not file.startswith("gates"):  # gates are a few KB: keep them exact
                vocabulary = file in (names.EMBEDDING_FILE, names.HEAD_FILE)
                graph = quantize_int4(graph, int4, bits=int4.vocab_bits if vocabulary else 4)
            if file == names.HEAD_FILE:  # the embedding, saved just before, may hold its weights already
                _point_at_stored(graph, _stored_weights(tmp, names.EMBEDDING_FILE))
            _save_graph(tmp, file, graph)
            size = sum(f.stat().st_size for f in tmp.glob(f"{file}*"))
            log(f"[{i}/{len(components)}] {names.component(file)} ({quant}) {size / 1e6:.1f} MB")
        if evidence is not None:
            evidence.write(tmp / names.EVIDENCE_FILE, mode, Path(model_dir) / "tokenizer.json")
            log(f"evidence index {names.EVIDENCE_FILE}: {(tmp / names.EVIDENCE_FILE).stat().st_size / 1e6:.1f} MB")
        shutil.copyfile(Path(model_dir) / "tokenizer.json", tmp / "tokenizer.json")
        bundle_manifest.write(tmp, _manifest(tmp, mode, shape, domains, quant, int4, max_context))
        from edgemode.runtime import Engine

        with Engine.load(tmp, [], verify=True) as engine:
            if check:
                _check(engine, mode, domains, quant, max_context)
            label = _write_kv_scales(tmp, engine, mode, calibration)
        manifest = _manifest(tmp, mode, shape, domains, quant, int4, max_context, label)
        bundle_manifest.write(tmp, manifest)
    log(f"wrote {out} in {time.time() - started:.1f} s")
    return manifest


def _write_kv_scales(tmp: Path, engine, mode, calibration: list[tuple[str, str]] | None) -> str:
    """Calibrate the staged bundle's KV-cache scales (export/calibrate.py), write them, and return
    what they were calibrated on."""
    length = min(CALIBRATION_TOKENS, engine.manifest.max_context)
    encoded = [(name, np.array(engine.tokenizer.encode(text).ids[:length])) for name, text in calibration or []]
    encoded = [(name, ids) for name, ids in encoded if len(ids)]  # an empty text calibrates nothing
    texts, label = [ids for _, ids in encoded], ", ".join(f"{name} ({len(ids)} tokens)" for name, ids in encoded)
    if not texts:
        log(f"warning: KV-cache scales calibrated on {RANDOM_CALIBRATION}; an int8 or int4 KV cache may lose more on real "
            "text than it would with scales from text like it (export --calibration FILE)")
        texts, label = [np.random.default_rng(0).integers(0, mode.config.vocab_size, length)], RANDOM_CALIBRATION
    started = time.time()
    log(f"calibrating the KV-cache scales on {label}, with no experts and with all of them")
    kv_scales.write(tmp / names.KV_SCALES_FILE, calibrate(engine, texts))
    log(f"wrote {names.KV_SCALES_FILE} in {time.time() - started:.1f} s")
    return label


def _manifest(tmp: Path, mode, shape: bundle_manifest.Backbone, domains, quant, int4, max_context,
              kv_calibration: str | None = None) -> bundle_manifest.Manifest:
    blocks = range(len(mode.layout.blocks))
    eos = getattr(getattr(mode.backbone, "generation_config", None), "eos_token_id", None) or mode.config.eos_token_id
    return bundle_manifest.Manifest(
        backbone=shape,
        layout=mode.layout,
        max_context=max_context,
        quantization=int4.to_json() if quant == "int4" else {"weights": "fp32"},
        domains=tuple(domains),
        graphs=bundle_manifest.Graphs(
            embedding=names.EMBEDDING_FILE,
            head=names.HEAD_FILE,
            backbone=tuple(names.backbone_file(b) for b in blocks),
            gates=tuple(names.gates_file(b) for b in blocks),
            experts={d: tuple(names.expert_file(d, b) for b in blocks) for d in domains},
        ),
        embedding_table=_embedding_table(tmp / names.EMBEDDING_FILE),
        tokenizer="tokenizer.json",
        eos_token_ids=tuple(sorted({eos} if isinstance(eos, int) else set(eos or []))),
        evidence=names.EVIDENCE_FILE if (tmp / names.EVIDENCE_FILE).is_file() else None,
        kv_scales=names.KV_SCALES_FILE if kv_calibration else None,
        kv_calibration=kv_calibration,
        files=bundle_manifest.describe_files(tmp, [p.name for p in tmp.iterdir() if p.name != bundle_manifest.MANIFEST]),
    )


def _embedding_table(graph_path: Path) -> bundle_manifest.EmbeddingTable:
    """Where the embedding graph's table sits in its data file, for the runtime's row reads."""
    graph = onnx.load(str(graph_path), load_external_data=False).graph
    (node,) = graph.node  # one Gather or GatherBlockQuantized
    where = {t.name: {e.key: e.value for e in t.external_data} for t in graph.initializer}
    table = {"file": where[node.input[0]]["location"], "bits": 32}
    if node.op_type == "GatherBlockQuantized":
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        signed = {t.name: t.data_type for t in graph.initializer}[node.input[0]] in (onnx.TensorProto.INT4, onnx.TensorProto.INT8)
        table.update(bits=attrs.get("bits", 4), block_size=attrs["block_size"], signed=signed)
    for tensor, index in (("weight", 0), ("scales", 2), ("zero_points", 3)):
        if index < len(node.input) and node.input[index]:
            table[tensor] = int(where[node.input[index]].get("offset", 0))
    return bundle_manifest.EmbeddingTable(**table)


def _check(engine, mode, domains: list[str], quant: str, max_context: int) -> None:
    metric, limit = TOLERANCES[quant]
    ids = np.random.default_rng(0).integers(0, mode.config.vocab_size, min(32, max_context))
    for subset in ([], domains) if domains else ([],):
        result = parity(engine, mode, subset, ids)
        label = "{" + ",".join(subset) + "}"
        log(f"parity {label}: max |d logits| {result['max_abs_error']:.2e}, {metric} {result[metric]:.2e} "
            f"(limit {limit}), top-1 agreement {result['top1']:.2f}")
        if not result[metric] <= limit:
            raise EdgemodeError(
                f"exported {quant} graphs disagree with the PyTorch model for domains {label}: "
                f"{metric} {result[metric]:.2e} exceeds {limit}; nothing was written"
            )
