"""The bundle contract: a directory with manifest.json, ONNX graphs (+ external data) and a tokenizer.

manifest.json holds the schema version, the backbone fingerprint and shape, the block layout, the
quantization, the domains, which graph serves which component, and every file with its size and
sha256. This module is standard library only: the runtime and the exporter share it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

from edgemode import EdgemodeError, read_json

FORMAT = "edgemode-bundle"
SCHEMA_VERSION = 3  # 2: embedding_table, read by row; 3: residual experts, gates on the normalised block input
RESIDUAL_SCHEMA = 3  # bundles before it mix experts that replace a share of their block: no export of those can run
MANIFEST = "manifest.json"


class BundleError(EdgemodeError):
    """The bundle is missing, malformed, tampered with, or does not fit the request."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_files(bundle: Path, names: list[str]) -> dict:
    return {name: {"bytes": (bundle / name).stat().st_size, "sha256": sha256(bundle / name)} for name in sorted(names)}


def write(bundle: Path, manifest: dict) -> None:
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def resolve(bundle: Path, name: str) -> Path:
    """The path of a file the manifest names, refusing anything that leaves the bundle."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        raise BundleError(f"invalid file name {name!r} in manifest")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:
        raise BundleError(f"manifest names a path outside the bundle: {name!r}")
    root = bundle.resolve()
    path = (bundle / pure).resolve()
    if root not in path.parents:
        raise BundleError(f"{name!r} resolves outside the bundle (symlink?)")
    return path


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise BundleError(f"malformed manifest: {what}")


def graph_files(manifest: dict, domains: list[str] | None = None) -> list[str]:
    """The graph files needed to run `domains` (all of the bundle's when None)."""
    graphs = manifest["graphs"]
    domains = manifest["domains"] if domains is None else domains
    names = [graphs["embedding"], graphs["head"], *graphs["backbone"]]
    if domains:
        names += graphs["gates"]
    for domain in domains:
        names += graphs["experts"][domain]
    return names


def with_external_data(manifest: dict, names: list[str]) -> list[str]:
    """Graph files plus their external-data files, as listed in the manifest."""
    files = manifest["files"]
    return [n for name in names for n in (name, name + ".data") if n in files]


def read(bundle: str | Path) -> dict:
    """Parse and validate manifest.json (structure, schema version, paths); checks no file contents."""
    bundle = Path(bundle)
    path = bundle / MANIFEST
    if not bundle.is_dir():
        raise BundleError(f"no bundle at {bundle}")
    if not path.is_file():
        raise BundleError(f"{bundle} is not an edgemode bundle (no {MANIFEST}; an interrupted export leaves none)")
    manifest = read_json(path, BundleError)
    _require(manifest.get("format") == FORMAT, f"format is not {FORMAT!r}")
    schema = manifest.get("schema")
    _require(_is_int(schema), "schema is not an integer")
    if schema > SCHEMA_VERSION:
        raise BundleError(f"bundle schema {schema} is newer than this edgemode reads ({SCHEMA_VERSION}); upgrade edgemode")
    if schema < RESIDUAL_SCHEMA:
        raise BundleError(f"bundle schema {schema} holds experts that replace a share of their block, which this edgemode "
                          "no longer runs; re-train the experts (`edgemode new`, `train-expert`) and export again")
    if schema < SCHEMA_VERSION:
        raise BundleError(f"bundle schema {schema} is older than this edgemode reads ({SCHEMA_VERSION}); "
                          "export it again with `edgemode export`")
    files = manifest.get("files")
    _require(isinstance(files, dict) and all(isinstance(v, dict) for v in files.values()), "files is not a table")
    for name, entry in files.items():
        resolve(bundle, name)
        _require(_is_int(entry.get("bytes")) and isinstance(entry.get("sha256"), str), f"entry for {name}")
    domains = manifest.get("domains")
    _require(isinstance(domains, list) and all(isinstance(d, str) for d in domains), "domains is not a list of names")
    _require(len(set(domains)) == len(domains), "duplicate domains")
    _require(_is_int(manifest.get("max_context")) and manifest["max_context"] >= 2, "max_context")
    _require(isinstance(manifest.get("quantization"), dict)
             and manifest["quantization"].get("weights") in ("fp32", "int4"), "quantization")
    eos = manifest.get("eos_token_ids", [])
    _require(isinstance(eos, list) and all(_is_int(t) for t in eos), "eos_token_ids")
    backbone = manifest.get("backbone")
    _require(isinstance(backbone, dict) and isinstance(backbone.get("fingerprint"), str)
             and isinstance(backbone.get("model_type"), str)
             and all(_is_int(backbone.get(k)) and backbone[k] > 0 for k in BACKBONE_SHAPE), "backbone shape")
    layout = manifest.get("layout")
    _require(isinstance(layout, dict), "layout is not a table")
    blocks, sources = layout.get("blocks"), layout.get("expert_sources")
    for what, value in (("layout.blocks", blocks), ("layout.expert_sources", sources)):
        _require(isinstance(value, list) and value and all(isinstance(b, list) and b and all(map(_is_int, b)) for b in value), what)
    _require(len(sources) == len(blocks), "layout.expert_sources per block")
    _require([layer for block in blocks for layer in block] == list(range(backbone["num_layers"])),
             "layout.blocks must split the backbone's layers in order")
    _require(len({len(s) for s in sources}) == 1, "layout.expert_sources: the same expert layers per block")
    graphs = manifest.get("graphs")
    _require(isinstance(graphs, dict), "graphs is not a table")
    experts = graphs.get("experts")
    _require(isinstance(experts, dict) and sorted(experts) == sorted(domains), "graphs.experts must match domains")
    for key, value in [("backbone", graphs.get("backbone")), ("gates", graphs.get("gates"))] + list(experts.items()):
        _require(isinstance(value, list) and len(value) == len(blocks), f"graphs.{key} per block")
    for key in ("embedding", "head"):
        _require(isinstance(graphs.get(key), str), f"graphs.{key}")
    for name in graph_files(manifest) + [manifest.get("tokenizer")]:
        _require(isinstance(name, str) and name in files, f"{name!r} is not listed in files")
    if "evidence" in manifest:  # optional: only bundles exported with --evidence have one
        _require(isinstance(manifest["evidence"], str) and manifest["evidence"] in files, "evidence is not listed in files")
    table = manifest.get("embedding_table")
    _require(isinstance(table, dict) and isinstance(table.get("file"), str) and table["file"] in files,
             "embedding_table.file is not listed in files")
    extents = embedding_table_extents(table, backbone["vocab_size"], backbone["hidden_size"])
    _require(all(offset + length <= files[table["file"]]["bytes"] for offset, length in extents.values()),
             "embedding_table reaches past the end of its file")
    return manifest


def embedding_table_extents(table: dict, vocab: int, hidden: int) -> dict:
    """(offset, length) in bytes of each tensor of the embedding table `table` describes:
    {"file", "bits": 32 | 8 | 4, "weight": offset} plus, when quantized, "block_size", "signed"
    (two's complement values), "scales" (fp32, one per block of a row) and optionally
    "zero_points" (`bits` wide, unsigned)."""
    bits = table.get("bits")
    _require(bits in (4, 8, 32), "embedding_table.bits")
    tensors = {"weight": vocab * hidden * bits // 8}
    if bits != 32:
        block = table.get("block_size")
        _require(_is_int(block) and block > 0, "embedding_table.block_size")
        _require(isinstance(table.get("signed"), bool), "embedding_table.signed")
        blocks = vocab * -(-hidden // block)  # the last block of a row may be partial
        tensors["scales"] = 4 * blocks
        if "zero_points" in table:
            tensors["zero_points"] = (blocks * bits + 7) // 8
    _require(all(_is_int(table.get(t)) and table[t] >= 0 for t in tensors), "embedding_table offsets")
    return {t: (table[t], length) for t, length in tensors.items()}


BACKBONE_SHAPE = ("hidden_size", "num_layers", "num_heads", "kv_heads", "head_dim", "kv_head_dim", "vocab_size")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def verify(bundle: str | Path, manifest: dict, names: list[str], full: bool) -> None:
    """Check that each named file exists with its recorded size (and sha256 when `full`)."""
    bundle = Path(bundle)
    for name in names:
        entry = manifest["files"][name]
        path = resolve(bundle, name)
        if not path.is_file():
            raise BundleError(f"bundle file {name} is missing")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise BundleError(f"bundle file {name} is {size} bytes, the manifest says {entry['bytes']} (truncated or replaced)")
        if full and sha256(path) != entry["sha256"]:
            raise BundleError(f"bundle file {name} does not match its sha256 in the manifest (corrupt or tampered)")
