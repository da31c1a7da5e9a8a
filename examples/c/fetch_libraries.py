"""The two shared libraries edgemode-app loads, taken out of PyPI's wheels for one CPU architecture.

    python examples/c/fetch_libraries.py --arch aarch64 --wheels DIR -o OUT \\
        onnxruntime-genai==0.18.0 onnxruntime==1.32.0                     (what `make app` runs)

Writes OUT/libonnxruntime-genai.so (from the onnxruntime-genai wheel) and OUT/libonnxruntime.so (the
onnxruntime wheel's libonnxruntime.so.X.Y.Z, under the first name genai looks for). The wheels are
manylinux ones, for glibc systems (Debian, Raspberry Pi OS); Android needs the libraries of the
Android packages (docs/DEVICES.md). Wheels are downloaded once into DIR; each library is written
beside its place and renamed into it. Standard library and pip only.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import subprocess
import sys
import zipfile
from pathlib import Path

PLATFORMS = ["manylinux_2_28_{arch}", "manylinux_2_27_{arch}", "manylinux2014_{arch}"]
# package -> (member of its wheel, name in OUT)
LIBRARIES = {"onnxruntime-genai": ("onnxruntime_genai/libonnxruntime-genai.so", "libonnxruntime-genai.so"),
             "onnxruntime": ("onnxruntime/capi/libonnxruntime.so.*", "libonnxruntime.so")}


def wheel(requirement: str, arch: str, folder: Path) -> Path:
    package, version = requirement.split("==")
    pattern = f"{package.replace('-', '_')}-{version}-*{arch}.whl"
    if not sorted(folder.glob(pattern)):
        platforms = [flag for p in PLATFORMS for flag in ("--platform", p.format(arch=arch))]
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                               *platforms, "-d", str(folder), requirement], capture_output=True, text=True)
        if done.returncode != 0 or not sorted(folder.glob(pattern)):
            sys.exit(f"fetch_libraries: pip download {requirement} for {arch} failed: "
                     + (done.stderr.strip().splitlines() or ["no wheel"])[-1])
    return sorted(folder.glob(pattern))[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", required=True, choices=["x86_64", "aarch64"])
    parser.add_argument("--wheels", required=True, type=Path, help="Folder the wheels are downloaded into.")
    parser.add_argument("-o", "--output", required=True, type=Path)
    parser.add_argument("requirements", nargs=2, help="onnxruntime-genai==X and onnxruntime==Y")
    args = parser.parse_args()
    packages = {r.split("==")[0]: r for r in args.requirements if "==" in r}
    if sorted(packages) != sorted(LIBRARIES):
        parser.error("give onnxruntime-genai==VERSION and onnxruntime==VERSION")
    args.output.mkdir(parents=True, exist_ok=True)
    for package, (member, name) in LIBRARIES.items():
        path = wheel(packages[package], args.arch, args.wheels)
        with zipfile.ZipFile(path) as zf:
            found = [n for n in zf.namelist() if fnmatch.fnmatch(n, member)]
            if len(found) != 1:
                sys.exit(f"fetch_libraries: {path.name} holds {len(found)} files like {member}, not one")
            tmp = args.output / f".{name}.tmp"
            tmp.write_bytes(zf.read(found[0]))
        os.replace(tmp, args.output / name)
        print(f"{args.output / name}: {found[0]} of {path.name}")


if __name__ == "__main__":
    main()
