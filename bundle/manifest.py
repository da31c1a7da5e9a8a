"""The bundle contract: a directory with manifest.json, ONNX graphs (+ external data) and a tokenizer.

manifest.json holds the schema version, the backbone's fingerprint and shape, the block layout, the
quantization, the domains, which graph serves which component, and every file with its size and
sha256. `read` checks it and returns a `Manifest`, a frozen object everyone reads by attribute; the
exporter makes one and `write`s it. A field added in a later schema is one attribute (with a
default when older bundles lack it), one check in `_parse`, and `to_json` writes it in field order.
This module is standard library only: the runtime, the planner and the exporter share it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from edgemode import EdgemodeError, read_json, sha256
from edgemode.domains import DomainSet
from edgemode.layout import Layout

FORMAT = "edgemode-bundle"
SCHEMA_VERSION = 3  # 2: embedding_table, read by row; 3: residual experts, gates on the normalised block input
RESIDUAL_SCHEMA = 3  # bundles before it mix experts that replace a share of their block
MANIFEST = "manifest.json"


class BundleError(EdgemodeError):
    """The bundle is missing, malformed, tampered with, or does not fit the request."""


@dataclass(frozen=True, kw_only=True)
class Shape:
    """A decoder backbone's shape: what sizes its graphs, its KV cache and its memory plan. The
    exporter, the graph builder, the planner and the runtime all read this one object."""

    hidden_size: int
    num_layers: int
    num_heads: int
    kv_heads: int
    head_dim: int
    kv_head_dim: int = field(init=False)  # GroupQueryAttention's head size: head_dim padded to a multiple of 16
    vocab_size: int
    intermediate_size: int
    tied_embeddings: bool = True

    def __post_init__(self):
        sizes = [f.name for f in fields(Shape) if f.init and f.name != "tied_embeddings"]
        if not all(_is_int(getattr(self, f)) and getattr(self, f) >= 1 for f in sizes):
            raise EdgemodeError(f"a backbone shape needs positive integers for {', '.join(sizes)}: {self.__dict__}")
        if not isinstance(self.tied_embeddings, bool):
            raise EdgemodeError(f"tied_embeddings must be true or false, got {self.tied_embeddings!r}")
        object.__setattr__(self, "kv_head_dim", -(-self.head_dim // 16) * 16)

    @classmethod
    def from_config(cls, config: Mapping, **more) -> "Shape":
        """The shape of a Hugging Face config (config.json's keys); `more`: a subclass's fields."""
        heads = config["num_attention_heads"]
        return cls(
            hidden_size=config["hidden_size"], num_layers=config["num_hidden_layers"], num_heads=heads,
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            vocab_size=config["vocab_size"], intermediate_size=config["intermediate_size"],
            tied_embeddings=bool(config.get("tie_word_embeddings", True)), **more,
        )

    def to_json(self) -> dict:
        return _table(self, fields(Shape))


@dataclass(frozen=True, kw_only=True)
class Backbone(Shape):
    """The bundle's backbone: its shape, its family, and the fingerprint of its weights."""

    fingerprint: str
    model_type: str

    def __post_init__(self):
        super().__post_init__()
        if not (isinstance(self.fingerprint, str) and isinstance(self.model_type, str)):
            raise EdgemodeError("a backbone needs a fingerprint and a model_type")

    def to_json(self) -> dict:
        return {"fingerprint": self.fingerprint, "model_type": self.model_type, **super().to_json()}


@dataclass(frozen=True)
class Graphs:
    """The graph file of each component: per block for the backbone, the gates and each expert."""

    embedding: str
    head: str
    backbone: tuple[str, ...]
    gates: tuple[str, ...]
    experts: Mapping[str, tuple[str, ...]]

    def __post_init__(self):
        _freeze(self, "experts")


@dataclass(frozen=True, kw_only=True)
class EmbeddingTable:
    """Where the embedding table's tensors sit in `file`, in bytes, for the runtime's row reads:
    `bits` 32, 8 or 4 per value; when quantized, `block_size`, `signed` (two's complement values),
    `scales` (fp32, one per block of a row) and optionally `zero_points` (`bits` wide, unsigned)."""

    file: str
    bits: int
    block_size: int | None = None
    signed: bool | None = None
    weight: int
    scales: int | None = None
    zero_points: int | None = None

    def extents(self, vocab: int, hidden: int) -> dict[str, tuple[int, int]]:
        """(offset, length) in bytes of each tensor the table has."""
        lengths = {"weight": vocab * hidden * self.bits // 8}
        if self.bits != 32:
            blocks = vocab * -(-hidden // self.block_size)  # the last block of a row may be partial
            lengths["scales"] = 4 * blocks
            if self.zero_points is not None:
                lengths["zero_points"] = (blocks * self.bits + 7) // 8
        return {tensor: (getattr(self, tensor), length) for tensor, length in lengths.items()}


@dataclass(frozen=True)
class FileEntry:
    bytes: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """A bundle's manifest.json, checked (see `read`)."""

    backbone: Backbone
    layout: Layout
    max_context: int
    quantization: Mapping  # {"weights": "fp32"} or edgemode.quantize.Int4Config's settings
    domains: tuple[str, ...]
    graphs: Graphs
    embedding_table: EmbeddingTable
    tokenizer: str
    eos_token_ids: tuple[int, ...]
    evidence: str | None = None  # only in bundles exported with --evidence
    kv_scales: str | None = None  # calibrated key and value ranges for quantized KV caches (runtime/kv_scales.py);
    kv_calibration: str | None = None  # what they were calibrated on; both absent in bundles exported before them
    files: Mapping[str, FileEntry]

    def __post_init__(self):
        _freeze(self, "quantization", "files")

    def domain_set(self, requested=None) -> DomainSet:
        """`requested` domains (None: all of them) checked against the bundle's, in its order."""
        return DomainSet(self.domains, requested, "this bundle")

    def graph_files(self, domains=None) -> list[str]:
        """The graph files needed to run `domains` (all of the bundle's when None)."""
        domains = self.domains if domains is None else domains
        names = [self.graphs.embedding, self.graphs.head, *self.graphs.backbone]
        if domains:
            names += self.graphs.gates
        for domain in domains:
            names += self.graphs.experts[domain]
        return names

    def with_external_data(self, names: list[str]) -> list[str]:
        """Graph files plus their external-data files, as listed in the manifest."""
        return [n for name in names for n in (name, name + ".data") if n in self.files]

    def to_json(self) -> dict:
        return {"format": FORMAT, "schema": SCHEMA_VERSION, **_table(self, fields(self))}


def _freeze(value, *names: str) -> None:
    """Make a frozen dataclass's mapping fields read-only too."""
    for name in names:
        object.__setattr__(value, name, MappingProxyType(dict(getattr(value, name))))


def _table(value, names) -> dict:
    """A dataclass's `names` fields as JSON, in field order; None (an absent optional field) left out."""
    return {f.name: _json(getattr(value, f.name)) for f in names if getattr(value, f.name) is not None}


def _json(value):
    if hasattr(value, "to_json"):
        return value.to_json()
    if is_dataclass(value):
        return _table(value, fields(value))
    if isinstance(value, Mapping):
        return {key: _json(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value


def describe_files(bundle: Path, names: list[str]) -> dict[str, FileEntry]:
    return {name: FileEntry((bundle / name).stat().st_size, sha256(bundle / name)) for name in sorted(names)}


def write(bundle: Path, manifest: Manifest) -> None:
    (bundle / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")


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


def read(bundle: str | Path) -> Manifest:
    """Parse and validate manifest.json (structure, schema version, paths); checks no file contents."""
    bundle = Path(bundle)
    path = bundle / MANIFEST
    if not bundle.is_dir():
        raise BundleError(f"no bundle at {bundle}")
    if not path.is_file():
        raise BundleError(f"{bundle} is not an edgemode bundle (no {MANIFEST}; an interrupted export leaves none)")
    return _parse(read_json(path, BundleError), bundle)


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise BundleError(f"malformed manifest: {what}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse(data: dict, bundle: Path) -> Manifest:
    _require(data.get("format") == FORMAT, f"format is not {FORMAT!r}")
    schema = data.get("schema")
    _require(_is_int(schema), "schema is not an integer")
    if schema > SCHEMA_VERSION:
        raise BundleError(f"bundle schema {schema} is newer than this edgemode reads ({SCHEMA_VERSION}); upgrade edgemode")
    if schema < RESIDUAL_SCHEMA:  # every older schema: no model directory exports to it any more
        raise BundleError(f"bundle schema {schema} holds experts that replace a share of their block, which this edgemode "
                          "no longer runs; re-train the experts (`edgemode new`, `train-expert`) and export again")
    files = data.get("files")
    _require(isinstance(files, dict) and all(isinstance(v, dict) for v in files.values()), "files is not a table")
    for name, entry in files.items():
        resolve(bundle, name)
        _require(_is_int(entry.get("bytes")) and isinstance(entry.get("sha256"), str), f"entry for {name}")
    domains = data.get("domains")
    _require(isinstance(domains, list) and all(isinstance(d, str) for d in domains), "domains is not a list of names")
    _require(len(set(domains)) == len(domains), "duplicate domains")
    _require(_is_int(data.get("max_context")) and data["max_context"] >= 2, "max_context")
    _require(isinstance(data.get("quantization"), dict)
             and data["quantization"].get("weights") in ("fp32", "int4"), "quantization")
    eos = data.get("eos_token_ids", [])
    _require(isinstance(eos, list) and all(_is_int(t) for t in eos), "eos_token_ids")
    backbone = data.get("backbone")
    _require(isinstance(backbone, dict), "backbone shape")
    try:
        backbone = Backbone(**{f.name: backbone[f.name] for f in fields(Backbone) if f.init})
    except (KeyError, EdgemodeError):
        raise BundleError("malformed manifest: backbone shape") from None
    _require(data["backbone"].get("kv_head_dim") == backbone.kv_head_dim, "backbone shape (kv_head_dim)")
    layout = data.get("layout")
    _require(isinstance(layout, dict), "layout is not a table")
    blocks, sources = layout.get("blocks"), layout.get("expert_sources")
    for what, value in (("layout.blocks", blocks), ("layout.expert_sources", sources)):
        _require(isinstance(value, list) and value and all(isinstance(b, list) and b and all(map(_is_int, b)) for b in value), what)
    _require(len(sources) == len(blocks), "layout.expert_sources per block")
    _require([layer for block in blocks for layer in block] == list(range(backbone.num_layers)),
             "layout.blocks must split the backbone's layers in order")
    _require(len({len(s) for s in sources}) == 1, "layout.expert_sources: the same expert layers per block")
    graphs = data.get("graphs")
    _require(isinstance(graphs, dict), "graphs is not a table")
    experts = graphs.get("experts")
    _require(isinstance(experts, dict) and sorted(experts) == sorted(domains), "graphs.experts must match domains")
    for key, value in [("backbone", graphs.get("backbone")), ("gates", graphs.get("gates"))] + list(experts.items()):
        _require(isinstance(value, list) and len(value) == len(blocks), f"graphs.{key} per block")
    for key in ("embedding", "head"):
        _require(isinstance(graphs.get(key), str), f"graphs.{key}")
    graphs = Graphs(graphs["embedding"], graphs["head"], tuple(graphs["backbone"]), tuple(graphs["gates"]),
                    {d: tuple(experts[d]) for d in domains})
    tokenizer, evidence, kv_scales = data.get("tokenizer"), data.get("evidence"), data.get("kv_scales")
    manifest = Manifest(
        backbone=backbone, layout=Layout.from_json(layout), max_context=data["max_context"],
        quantization=data["quantization"], domains=tuple(domains), graphs=graphs,
        embedding_table=_embedding_table(data.get("embedding_table"), files, backbone), tokenizer=tokenizer,
        eos_token_ids=tuple(eos), evidence=evidence, kv_scales=kv_scales, kv_calibration=data.get("kv_calibration"),
        files={name: FileEntry(entry["bytes"], entry["sha256"]) for name, entry in files.items()},
    )
    for name in manifest.graph_files() + [tokenizer]:
        _require(isinstance(name, str) and name in files, f"{name!r} is not listed in files")
    if "evidence" in data:
        _require(isinstance(evidence, str) and evidence in files, "evidence is not listed in files")
    if "kv_scales" in data:
        _require(isinstance(kv_scales, str) and kv_scales in files, "kv_scales is not listed in files")
        _require(isinstance(data.get("kv_calibration"), str), "kv_calibration")
    return manifest


def _embedding_table(table, files: dict, backbone: Backbone) -> EmbeddingTable:
    _require(isinstance(table, dict) and isinstance(table.get("file"), str) and table["file"] in files,
             "embedding_table.file is not listed in files")
    bits = table.get("bits")
    _require(bits in (4, 8, 32), "embedding_table.bits")
    offsets = ["weight"]
    if bits != 32:
        _require(_is_int(table.get("block_size")) and table["block_size"] > 0, "embedding_table.block_size")
        _require(isinstance(table.get("signed"), bool), "embedding_table.signed")
        offsets += ["scales"] + (["zero_points"] if "zero_points" in table else [])
    _require(all(_is_int(table.get(t)) and table[t] >= 0 for t in offsets), "embedding_table offsets")
    parsed = EmbeddingTable(**{f.name: table.get(f.name) for f in fields(EmbeddingTable)})
    extents = parsed.extents(backbone.vocab_size, backbone.hidden_size)
    _require(all(offset + length <= files[parsed.file]["bytes"] for offset, length in extents.values()),
             "embedding_table reaches past the end of its file")
    return parsed


def verify(bundle: str | Path, manifest: Manifest, names: list[str], full: bool) -> None:
    """Check that each named file exists with its recorded size (and sha256 when `full`)."""
    bundle = Path(bundle)
    for name in names:
        entry = manifest.files[name]
        path = resolve(bundle, name)
        if not path.is_file():
            raise BundleError(f"bundle file {name} is missing")
        size = path.stat().st_size
        if size != entry.bytes:
            raise BundleError(f"bundle file {name} is {size} bytes, the manifest says {entry.bytes} (truncated or replaced)")
        if full and sha256(path) != entry.sha256:
            raise BundleError(f"bundle file {name} does not match its sha256 in the manifest (corrupt or tampered)")
