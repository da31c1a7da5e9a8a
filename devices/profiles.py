"""Device profiles: one JSON file per target in this folder, or a user's own file.

Fields: name, ram_bytes, budget_bytes (what the model may use: weights + KV + activations +
runtime), cores and threads (threads at most cores), arch and cpu_features (the /proc/cpuinfo
features that pick onnxruntime's int4 kernels: devices/cpu.py), execution_providers (preferred
first; the runtime takes the first its onnxruntime has), quantization defaults,
sources (where each number comes from). The context a load holds follows from the budget, the
domains and the KV type (devices/planner.py: longest_context), not from the profile. Standard library only.
"""

from __future__ import annotations

from pathlib import Path

from edgemode import EdgemodeError, read_json
from edgemode.devices import cpu

FOLDER = Path(__file__).parent
MAX_THREADS = 256  # onnxruntime gives each session its own pool; thousands of threads never return
REQUIRED = {"name": str, "budget_bytes": int, "cores": int, "threads": int, "arch": str, "cpu_features": list,
            "execution_providers": list, "quantization": dict}


def names() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.json"))


def load(device: str) -> dict:
    """A profile by name (see `edgemode devices`) or from a JSON file path."""
    path = FOLDER / f"{device}.json" if device in names() else Path(device)
    if not path.is_file():
        raise EdgemodeError(f"unknown device {device!r}: use one of {', '.join(names())} or a profile JSON file")
    profile = read_json(path)
    for key, kind in REQUIRED.items():
        if not isinstance(profile.get(key), kind) or isinstance(profile.get(key), bool):
            raise EdgemodeError(f"device profile {path}: {key!r} must be a {kind.__name__}")
    if profile["budget_bytes"] <= 0 or not 1 <= profile["threads"] <= MAX_THREADS:
        raise EdgemodeError(f"device profile {path}: budget_bytes must be positive, threads 1 to {MAX_THREADS}")
    if profile["arch"] not in cpu.KERNEL_FEATURES or not profile["threads"] <= profile["cores"]:
        raise EdgemodeError(f"device profile {path}: arch must be one of {', '.join(cpu.KERNEL_FEATURES)}, threads at most cores")
    if not all(isinstance(f, str) for f in profile["cpu_features"] + profile["execution_providers"]):
        raise EdgemodeError(f"device profile {path}: cpu_features and execution_providers must be lists of names")
    if profile["quantization"].get("weights") not in ("fp32", "int4"):
        raise EdgemodeError(f"device profile {path}: quantization.weights must be 'fp32' or 'int4'")
    profile.setdefault("profile", path.stem)
    return profile


def int4_fallback_warning(profile: dict) -> str | None:
    """Why int4 bundles would run slower there than on the CPUs they are made for, if they would."""
    if cpu.int4_compute(profile["arch"], profile["cpu_features"]) == "int8":
        return None
    return (f"{profile['profile']}'s CPU lacks {cpu.INT8_PATH_NEEDS[profile['arch']]}: onnxruntime's int4 kernels fall back "
            "to fp32 activations there (slower, and the numerics of an accuracy_level 0 export)")
