"""The bundle contract: a directory with manifest.json, ONNX graphs (+ external data) and a tokenizer.

manifest.json holds the schema version, the backbone fingerprint and shape, the block layout, the
quantization, the domains, which graph serves which component, and every file with its size and
sha256. This module is standard library only: the runtime and the exporter share it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

from edgemode import EdgemodeError

FORMAT = "edgemode-bundle"
SCHEMA_VERSION = 1
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
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path} is not valid JSON: {e}") from None
    _require(isinstance(manifest, dict) and manifest.get("format") == FORMAT, f"format is not {FORMAT!r}")
    schema = manifest.get("schema")
    _require(isinstance(schema, int) and not isinstance(schema, bool), "schema is not an integer")
    if schema > SCHEMA_VERSION:
        raise BundleError(f"bundle schema {schema} is newer than this edgemode reads ({SCHEMA_VERSION}); upgrade edgemode")
    _require(schema == SCHEMA_VERSION, f"unsupported schema {schema}")
    files = manifest.get("files")
    _require(isinstance(files, dict) and all(isinstance(v, dict) for v in files.values()), "files is not a table")
    for name, entry in files.items():
        resolve(bundle, name)
        _require(isinstance(entry.get("bytes"), int) and isinstance(entry.get("sha256"), str), f"entry for {name}")
    domains = manifest.get("domains")
    _require(isinstance(domains, list) and all(isinstance(d, str) for d in domains), "domains is not a list of names")
    _require(len(set(domains)) == len(domains), "duplicate domains")
    graphs = manifest.get("graphs")
    _require(isinstance(graphs, dict), "graphs is not a table")
    blocks = manifest.get("layout", {}).get("blocks")
    _require(isinstance(blocks, list) and len(blocks) > 0, "layout.blocks")
    experts = graphs.get("experts")
    _require(isinstance(experts, dict) and sorted(experts) == sorted(domains), "graphs.experts must match domains")
    for key in ("backbone", "gates"):
        _require(isinstance(graphs.get(key), list) and len(graphs[key]) == len(blocks), f"graphs.{key} per block")
    for domain in domains:
        _require(isinstance(experts[domain], list) and len(experts[domain]) == len(blocks), f"graphs.experts.{domain}")
    for name in graph_files(manifest) + [manifest.get("tokenizer")]:
        _require(isinstance(name, str) and name in files, f"{name!r} is not listed in files")
    return manifest


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
