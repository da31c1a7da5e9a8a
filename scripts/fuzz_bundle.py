"""Fuzz manifest parsing and bundle loading with hypothesis: only edgemode's own errors may escape.

Each case mutates a valid bundle's manifest.json (JSON-level edits: types swapped, keys dropped,
paths and numbers changed, raw bytes flipped) and calls `Engine.load`. Anything raised that is not
an EdgemodeError counts as a crash.

    python scripts/fuzz_bundle.py BUNDLE [--cases 10000]
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgemode import EdgemodeError
from edgemode.bundle import manifest as bundle_manifest
from edgemode.runtime import Engine

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                      st.text(max_size=12), st.sampled_from(["../x", "/etc/passwd", "head.onnx", "a/../../b", ""]))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


def paths(value, prefix=()):
    """Every key path inside a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, prefix + (i,))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--cases", type=int, default=10000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fuzz-bundle-")) / "bundle"
    shutil.copytree(args.bundle, work)
    original = json.loads((work / bundle_manifest.MANIFEST).read_text())
    all_paths = [p for p in paths(original) if p]
    stats = {"cases": 0, "loaded": 0, "refused": 0, "crashes": 0}

    mutation = st.tuples(st.sampled_from(all_paths), st.sampled_from(["replace", "delete"]), JSON_VALUE)

    @settings(max_examples=args.cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(mutation, min_size=1, max_size=4), st.one_of(st.none(), st.binary(max_size=8)), st.integers(0, 10**6))
    def case(mutations, raw_bytes, offset):
        manifest = copy.deepcopy(original)
        for path, action, value in mutations:
            parent = manifest
            try:
                for key in path[:-1]:
                    parent = parent[key]
                if action == "delete":
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = value
            except (KeyError, IndexError, TypeError):
                continue
        data = json.dumps(manifest).encode()
        if raw_bytes is not None:  # also damage the bytes themselves
            at = offset % len(data)
            data = data[:at] + raw_bytes + data[at + len(raw_bytes):]
        (work / bundle_manifest.MANIFEST).write_bytes(data)
        stats["cases"] += 1
        try:
            domains = manifest.get("domains") if isinstance(manifest, dict) else None
            Engine.load(work, domains if isinstance(domains, list) else [])
            stats["loaded"] += 1
        except EdgemodeError:
            stats["refused"] += 1
        except Exception:  # noqa: BLE001 - this is what the fuzzer looks for
            stats["crashes"] += 1
            if stats["crashes"] <= 5:
                print(f"CRASH with manifest {data[:300]!r}\n{traceback.format_exc()}", file=sys.stderr)

    case()
    print(json.dumps(stats))
    shutil.rmtree(work.parent, ignore_errors=True)
    sys.exit(1 if stats["crashes"] else 0)


if __name__ == "__main__":
    main()
