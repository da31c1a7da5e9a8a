"""A MoDE model directory on disk.

    MODEL_DIR/
      mode.json                 layout, domains, backbone location and fingerprint
      experts/<domain>.safetensors   one file per expert: its layers, its gate rows, its metadata
      gates.safetensors         the composition's gates (backbone row + one row per domain)
      tokenizer.json            the backbone's tokenizer

An expert file is stamped with the fingerprint of the backbone it was made for, and never loads
onto another one. Weights are safetensors only: nothing here unpickles.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save as safetensors_bytes

from edgemode import EdgemodeError, read_json, sha256
from edgemode.domains import check_domain_name
from edgemode.model.backbones import load_backbone
from edgemode.model.mode import MoDE, Layout, new_expert, output_projections

MODEL_SCHEMA = 2  # 2: residual experts (zero-initialised output projections), gates on the normalised block input
EXPERT_FORMAT = "edgemode-expert"
RETRAIN = ("schema 1 experts replace a share of their block, which this edgemode no longer trains or runs; "
           "create the model again with `edgemode new` and re-train its experts")


def fingerprint(backbone) -> str:
    """sha256 over the backbone's architecture and every weight, in name order."""
    c = backbone.config
    digest = hashlib.sha256()
    shape = [c.model_type, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
             c.vocab_size, c.intermediate_size]
    digest.update(json.dumps(shape).encode())
    for name, tensor in sorted(backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _write_safetensors(path: Path, tensors: dict, metadata: dict) -> None:
    """safetensors with its metadata in sorted order, written atomically.

    safetensors serialises the metadata in hash-map order, which changes from run to run: equal
    models would differ byte for byte. We rewrite only the header's JSON; the offsets in it are
    relative to the data, which does not move.
    """
    blob = safetensors_bytes(tensors, metadata)
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the library writes it
    _write_atomic(path, lambda tmp: tmp.write_bytes(len(text).to_bytes(8, "little") + text + blob[8 + size :]))


def _expert_path(model_dir: Path, domain: str) -> Path:
    return model_dir / "experts" / f"{domain}.safetensors"


def save_expert(mode: MoDE, model_dir: Path, domain: str) -> None:
    """Write one expert's file: its layers and its own gate rows (what stage 1 trains)."""
    index = 1 + mode.domains.index(domain)
    tensors = {}
    for b, layers in enumerate(mode.experts[domain]):
        for name, value in layers.state_dict().items():
            tensors[f"block{b}.{name}"] = value
        tensors[f"gate{b}.weight"] = mode.gates[b].weight[index]
        tensors[f"gate{b}.bias"] = mode.gates[b].bias[index : index + 1]
    meta = {"format": EXPERT_FORMAT, "schema": str(MODEL_SCHEMA), "domain": domain,
            "backbone_fingerprint": mode.fingerprint, "layout": json.dumps(mode.layout.to_json())}
    path = _expert_path(model_dir, domain)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    _write_safetensors(path, tensors, meta)


def save(mode: MoDE, model_dir: str | Path, experts: bool = True) -> None:
    """Write the experts (unless `experts=False`), the composition's gates, and mode.json last.

    The composition records each expert file's sha256: retraining an expert afterwards makes its
    composed gate rows stale, and loading then falls back to the expert's own rows.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    for domain in mode.domains if experts else []:
        save_expert(mode, model_dir, domain)
    gates = {}
    for b, gate in enumerate(mode.gates):
        gates[f"gate{b}.weight"] = gate.weight.detach().contiguous().clone()
        gates[f"gate{b}.bias"] = gate.bias.detach().contiguous().clone()
    experts = {d: sha256(_expert_path(model_dir, d)) for d in mode.domains}
    meta = {"domains": json.dumps(mode.domains), "experts_sha256": json.dumps(experts),
            "backbone_fingerprint": mode.fingerprint}
    _write_safetensors(model_dir / "gates.safetensors", gates, meta)
    manifest = {
        "format": "edgemode-model",
        "schema": MODEL_SCHEMA,
        "backbone": {"source": mode.source, "fingerprint": mode.fingerprint, "model_type": mode.config.model_type},
        "layout": mode.layout.to_json(),
        "domains": mode.domains,
    }
    _write_atomic(model_dir / "mode.json", lambda tmp: tmp.write_text(json.dumps(manifest, indent=2) + "\n"))


def create(model_dir: str | Path, backbone_source: str, domains: list[str], blocks: int, expert_layers: int,
           init: str = "copy", seed: int = 0) -> MoDE:
    """`edgemode new`: a MoDE model over a backbone, with fresh experts for `domains`."""
    model_dir = Path(model_dir)
    if (model_dir / "mode.json").exists():
        raise EdgemodeError(f"{model_dir} already holds a MoDE model (mode.json); choose another directory")
    for domain in domains:
        check_domain_name(domain)
    if init not in ("copy", "random"):
        raise EdgemodeError(f"--init must be 'copy' or 'random', got {init!r}")
    if Path(backbone_source).exists():  # a directory, not a named backbone: usable from any working directory
        backbone_source = str(Path(backbone_source).resolve())
    backbone, tokenizer = load_backbone(backbone_source)
    layout = Layout.split(backbone.config.num_hidden_layers, blocks, expert_layers)
    torch.manual_seed(seed)
    experts = {}
    for domain in domains:
        layers = new_expert(backbone, layout)
        for block_layers, sources in zip(layers, layout.expert_sources):
            for layer, src in zip(block_layers, sources):
                if init == "copy":
                    layer.load_state_dict(backbone.model.layers[src].state_dict())
                else:
                    for module in layer.modules():
                        backbone._init_weights(module)
                with torch.no_grad():  # the identity: an untrained expert changes nothing
                    for projection in output_projections(layer):
                        projection.weight.zero_()
                        if projection.bias is not None:
                            projection.bias.zero_()
        experts[domain] = layers
    mode = MoDE(backbone, layout, domains, experts, backbone_source, fingerprint(backbone))
    model_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(model_dir / "tokenizer.json"))
    save(mode, model_dir)
    return mode


def read_manifest(model_dir: str | Path) -> dict:
    path = Path(model_dir) / "mode.json"
    if not path.is_file():
        raise EdgemodeError(f"{model_dir} is not a MoDE model directory (no mode.json)")
    manifest = read_json(path)
    if manifest.get("format") != "edgemode-model":
        raise EdgemodeError(f"{path} is not an edgemode model manifest")
    if manifest.get("schema") == 1:
        raise EdgemodeError(f"{path}: {RETRAIN}")
    if manifest.get("schema") != MODEL_SCHEMA:
        raise EdgemodeError(f"{path} has schema {manifest.get('schema')}; this edgemode reads schema {MODEL_SCHEMA}")
    domains = manifest.get("domains")
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        raise EdgemodeError(f"{path}: domains must be a list of names")
    return manifest


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    if not path.is_file():
        raise EdgemodeError(f"missing file {path}")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError) as e:
        raise EdgemodeError(f"{path} is not a readable safetensors file: {e}") from None


def load_expert(backbone, layout: Layout, path: Path, backbone_fingerprint: str):
    """One expert's layers and its own gate rows [(weight, bias) per block], after checking its stamp."""
    tensors, meta = _read_safetensors(path)
    if meta.get("format") != EXPERT_FORMAT:
        raise EdgemodeError(f"{path} is not an edgemode expert file")
    if meta.get("schema") == "1":
        raise EdgemodeError(f"expert {path.name}: {RETRAIN}")
    if meta.get("schema") != str(MODEL_SCHEMA):
        raise EdgemodeError(f"expert {path.name} has schema {meta.get('schema')}; this edgemode reads schema {MODEL_SCHEMA}")
    if meta.get("backbone_fingerprint") != backbone_fingerprint:
        raise EdgemodeError(
            f"expert {path.name} was made for backbone {meta.get('backbone_fingerprint', '?')[:19]}..., "
            f"not this model's backbone {backbone_fingerprint[:19]}...; it cannot be loaded onto it"
        )
    if json.loads(meta.get("layout", "null")) != layout.to_json():
        raise EdgemodeError(f"expert {path.name} has a different block layout than this model")
    layers = new_expert(backbone, layout)
    for b, block_layers in enumerate(layers):
        prefix = f"block{b}."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            block_layers.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = " ".join(str(e).strip().splitlines()[:2])
            raise EdgemodeError(f"expert {path.name} does not match the backbone's layer shapes: {first}") from None
    gate_rows = [(tensors[f"gate{b}.weight"], tensors[f"gate{b}.bias"][0]) for b in range(len(layers))]
    return layers, gate_rows


def load(model_dir: str | Path) -> MoDE:
    """Load a MoDE model directory with all its experts."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    source, expected = manifest["backbone"]["source"], manifest["backbone"]["fingerprint"]
    backbone, _ = load_backbone(source)
    if fingerprint(backbone) != expected:
        raise EdgemodeError(f"the backbone at {source} is not the one {model_dir} was made for (fingerprint {expected[:19]}...)")
    layout = Layout.from_json(manifest["layout"])
    domains = manifest["domains"]
    experts, rows = {}, {}
    for domain in domains:
        experts[domain], rows[domain] = load_expert(backbone, layout, _expert_path(model_dir, domain), expected)
    mode = MoDE(backbone, layout, domains, experts, source, expected)
    composed, meta = _read_safetensors(model_dir / "gates.safetensors")
    composed_domains = json.loads(meta.get("domains", "[]"))
    composed_sha = json.loads(meta.get("experts_sha256", "{}"))
    # Composed rows hold only for experts unchanged since the composition (hash each file once).
    current = [d for d in domains if composed_sha.get(d) == sha256(_expert_path(model_dir, d))]
    with torch.no_grad():
        for b, gate in enumerate(mode.gates):
            gate.weight[0], gate.bias[0] = composed[f"gate{b}.weight"][0], composed[f"gate{b}.bias"][0]
            for row, domain in enumerate(domains, start=1):
                if domain in current:
                    src = 1 + composed_domains.index(domain)
                    weight, bias = composed[f"gate{b}.weight"][src], composed[f"gate{b}.bias"][src]
                else:  # retrained or added since the last composition: the expert's own rows
                    weight, bias = rows[domain][b]
                gate.weight[row], gate.bias[row] = weight, bias
    return mode
