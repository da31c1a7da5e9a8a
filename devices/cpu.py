"""What a CPU offers onnxruntime's int4 kernels, and which compute path follows from it.

Bundles are made for MatMulNBits with accuracy_level 4: activations quantized to int8 inside the
kernel. That path needs AVX2 on x86-64 and the dot-product extension (`asimddp`) on arm64; without
it onnxruntime computes in fp32 instead, silently: under emulation a Cortex-A72 (no dot product)
gave logits bit-identical to an accuracy_level 0 export (issue 15). Feature names are Linux's
/proc/cpuinfo names. Standard library only: the planner and `edgemode bench` both use it.
"""

from __future__ import annotations

import os
import platform

# The features that select onnxruntime's int4 kernels, and the one the int8 path needs.
KERNEL_FEATURES = {
    "x86_64": ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"),
    "arm64": ("asimddp", "i8mm", "sve", "sve2"),
}
INT8_PATH_NEEDS = {"x86_64": "avx2", "arm64": "asimddp"}
# arm64 features as the kernel reports them to programs: (getauxval type, bit). Under qemu-user,
# /proc/cpuinfo is the host's, but the auxiliary vector is the emulated CPU's.
ARM64_HWCAPS = {"asimddp": (16, 1 << 20), "sve": (16, 1 << 22), "i8mm": (26, 1 << 13), "sve2": (26, 1 << 1)}


def _arm64_hwcaps() -> set[str]:
    import ctypes

    getauxval = getattr(ctypes.CDLL(None), "getauxval", None)
    if getauxval is None:
        return set()
    getauxval.restype = ctypes.c_ulong
    return {name for name, (kind, bit) in ARM64_HWCAPS.items() if getauxval(kind) & bit}


def arch_name(machine: str) -> str:
    """platform.machine() as the profiles spell it: 'arm64' or 'x86_64'."""
    return {"aarch64": "arm64", "arm64": "arm64", "amd64": "x86_64", "x86_64": "x86_64"}.get(machine.lower(), machine.lower())


def int4_compute(arch: str, features) -> str:
    """'int8' when accuracy_level 4 runs as it should on this CPU, else 'fp32' (the fallback)."""
    return "int8" if INT8_PATH_NEEDS.get(arch) in set(features) else "fp32"


def this_machine() -> dict:
    """CPU model, arch, cores, the kernel-selecting features it has, and the int4 compute path."""
    arch, model, flags = arch_name(platform.machine()), None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key in ("model name", "Model") and model is None:
                    model = value
                elif key in ("flags", "Features"):  # x86 and arm64 spellings
                    flags.update(value.split())
    except OSError:  # not Linux: the features stay unknown
        pass
    model = model or platform.processor() or platform.machine()
    if arch == "arm64" and platform.system() == "Linux":
        flags = _arm64_hwcaps() | {"neon"}  # AArch64 always has Advanced SIMD; marks the features as known
    features = [f for f in KERNEL_FEATURES.get(arch, ()) if f in flags]
    return {"cpu": model, "arch": arch, "cores": os.cpu_count(), "cpu_features": features,
            "int4_compute": int4_compute(arch, features) if flags else "unknown"}
