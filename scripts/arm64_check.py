"""aarch64 check: edgemode's runtime under qemu-user emulation, against x86-64 on the same bundles.

    scripts/arm64_check.sh [--self-test-wrong] [--cpus cortex-a76,cortex-a72]   (root; what .ci/run calls)

What it does, in order (every step prints what it is doing; any failure is one line and a non-zero exit):

1. Prerequisites: root, Debian's qemu-user-static, debootstrap and binfmt-support (apt-get installs
   them when missing), and a binfmt_misc entry for aarch64 ELF files (mounted and registered when
   missing). binfmt is required, not optional: debootstrap's second stage, pip's build backend and
   `python -m venv` all exec aarch64 programs from aarch64 programs, and Debian 12's qemu-user (7.2)
   cannot follow an execve without it, so "qemu-aarch64-static -L ROOT" alone cannot install
   anything. Without binfmt the script says why and exits 2.
2. A Debian arm64 root (debootstrap --arch=arm64 --variant=minbase, with python3, python3-venv,
   python3-pip and ca-certificates), cached at $EDGEMODE_CACHE/arm64-root (default
   ~/.cache/edgemode/arm64-root). It is built in a temporary directory beside it and renamed into
   place only when complete, so an interrupted build is never mistaken for a finished one.
   Every command in the root runs in a private mount namespace (unshare) with a proc mount of its
   own (without /proc onnxruntime refuses to open external weights: "Secure opened-file
   canonicalization requires procfs at /proc/self/fd") and *without* /sys: with the host's /sys
   bind-mounted, `import onnxruntime` segfaults under qemu (signal 11 in its CPU detection); without
   it onnxruntime only warns that cpuinfo cannot read /sys (those warnings are counted and filtered
   from the log). Nothing is left mounted when a command ends or crashes. The host's CA bundle is
   copied in and PIP_CERT points at it.
3. A venv in the root (/opt/edgemode-venv) with edgemode's base dependencies from pyproject.toml,
   pinned to the versions in the x86 project venv so both sides run the same onnxruntime; it is
   cached and rebuilt when those pins change. edgemode itself is reinstalled from this checkout on
   every run (tracked and untracked-but-not-ignored files are copied into the root first, so the
   build never writes into the repo): `pip install --no-deps`, i.e. the runtime-only install.
4. On x86 (the project venv): a tiny random llama backbone (conftest.py's llama shape) with two
   random experts a, b and mixing gates, exported fp32, int4 (accuracy_level 4, the default) and,
   for information only, int4 with accuracy_level 0; a fixed text of 384 seeded words of the
   tiny word-level tokenizer.
5. For each emulated CPU (QEMU_CPU=cortex-a76: has dotprod; cortex-a72: no dotprod; the script
   checks AT_HWCAP inside the emulator to be sure the model took effect) and each gated bundle
   (fp32, int4): `edgemode inspect --verify`, `edgemode run --max-new-tokens 8` and
   `edgemode eval --json` for S = {}, {a}, {a,b}; and the logits of 64 tokens (32 prefilled, 32
   cached one-token steps) for each S, dumped by this script's `_logits` helper through
   Engine.forward. x86 runs the same commands on the same files. `edgemode bench --json` must report
   the int4 path the CPU implies (int8 with the dot product, fp32 without). The int4 bundle also runs
   with an int8 KV cache (issue 20; gated row "int4-kv8": `--kv int8`, the int4 tolerances).

6. The C app (issue 21): `make app APP_ARCH=aarch64` cross-compiles examples/c/edgemode-app with
   Debian's gcc-aarch64-linux-gnu (installed when missing) and puts the aarch64 wheels' libraries
   beside it; the three files go to /opt/edgemode-app in the root. On x86, an int4 bundle of
   tests/conftest.py's bos_bpe_model (a tokenizer genai reads, BOS first) and its genai folder.
   For each CPU, for S = {} and {legal}: the app's greedy text for its default prompt must equal
   `edgemode run`'s on the same emulated CPU (the same onnxruntime build, so the same kernels;
   against x86 it is reported), and its --bench must print JSON with arch aarch64 and positive
   figures (emulated timings mean nothing).

Tolerances (arm vs x86, same bundle, same S):

- fp32: perplexity |ppl_arm - ppl_x86| / ppl_x86 <= 1e-5 (issue 15); logits max_rel_error <= 1e-4
  (the exporter's fp32 check, export/exporter.py TOLERANCES); `run` prints the same text.
- int4: logits rms_rel_error = RMS(logits_arm - logits_x86) / RMS(logits_x86) <= 0.5, the exporter's
  int4 tolerance (TOLERANCES["int4"]) verbatim: the exporter lets an int4 graph differ from its
  reference by this much and no more, so an aarch64 run of the same int4 graphs may differ from
  the x86 run by no more either (it catches broken graphs: unrelated logits give ~1.4).
  Perplexity: |ppl_arm - ppl_x86| / ppl_x86 <= what int4 itself moves perplexity on x86 for this
  model, max over S of |ppl_int4 - ppl_fp32| / ppl_fp32 (printed; 1.5% here, from S = {}). That is the
  exporter's tolerance expressed in perplexity on the bundle at hand: an ARM board may differ from
  x86 by less than int4 differs from fp32, never by more. The max over S (not per S) keeps a set
  whose int4 gap happens to be near zero from making the bound meaninglessly tight ({a,b}: 5e-4).
  The logits gate is the stronger of the two on a tiny random model: --self-test-wrong's bundle
  (logits rms_rel_error ~1.0 against x86, top-1 agreement 0.02-0.09) moves perplexity by only
  0.6-2.5%, so perplexity alone catches it for S = {} only. `run` text is reported, not gated:
  onnxruntime's int8-activation kernels round differently per CPU, so greedy tokens of a random
  model may legitimately differ.

The tiny backbone uses initializer_range 0.1 instead of transformers' 0.02: at 0.02 a tiny random
model's logits are ~0.1 in size, its perplexity sits at the vocabulary size whatever the weights
and a broken int4 kernel would not move it; at 0.1 logits are a few units, perplexity moves with
them (weakly, see above) and the int4 export still passes the exporter's own check (rms_rel_error
0.33-0.37 < 0.5).

--self-test-wrong: the emulator gets an int4 bundle whose int4 weight scales in the backbone
graphs were multiplied by 1.5 (checksums in its manifest updated, so `inspect --verify` passes and
only the numerics can catch it), while x86 keeps the true bundle. The check must fail (exit 1).

Exit codes: 0 all checks passed; 1 a check failed; 2 the check could not run (prerequisites,
emulation unavailable, root or venv build failed).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fcntl
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("EDGEMODE_CACHE", Path.home() / ".cache" / "edgemode"))
PACKAGES = ["qemu-user-static", "debootstrap", "binfmt-support"]
INCLUDE = ["python3", "python3-venv", "python3-pip", "ca-certificates"]
VENV = "/opt/edgemode-venv"  # inside the root
WORK = "/tmp/edgemode-arm64-check"  # inside the root; x86 reads the same files through the root's path
CA = "/etc/edgemode-ca/ca-certificates.crt"  # inside the root
DOMAIN_SETS = [[], ["a"], ["a", "b"]]
GATED = ["fp32", "int4", "int4-kv8"]
KV_CHECKED = {"int4-kv8": ("int4", "int8")}  # gated name -> (the bundle it runs, its --kv)
FP32_PPL_TOL = 1e-5
FP32_LOGITS = ("max_rel_error", 1e-4)  # export/exporter.py TOLERANCES["fp32"]
INT4_LOGITS = ("rms_rel_error", 0.5)  # export/exporter.py TOLERANCES["int4"]
TEXT_WORDS, WINDOW, PROMPT = 384, 128, "w5 w17 w42 w7"
LOGIT_TOKENS, LOGIT_PREFILL = 64, 32
WRONG_SCALE = 1.5
APP = "/opt/edgemode-app"  # inside the root: examples/c's binary and the two aarch64 libraries (`make app APP_ARCH=aarch64`)
APP_SETS, APP_TOKENS, APP_PROMPT = [[], ["legal"]], 16, "Permission is hereby granted"  # the app's default prompt
EXPECT_DOTPROD = {"cortex-a76": True, "cortex-a72": False}
CPUINFO_NOISE = re.compile(r"^(Error in cpuinfo: .*|onnxruntime (cpuid_info )?warning: .*)$")
STARTED = time.time()


class CannotRun(Exception):
    """The check could not be carried out (exit 2)."""


def say(message: str) -> None:
    print(f"[arm64 {time.time() - STARTED:6.1f}s] {message}", flush=True)


def sh(argv: list[str], what: str, timeout: float = 3600, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise CannotRun(f"{what} failed (exit {result.returncode}): {' '.join(argv[:6])} ...\n{tail}")
    return result


def clean_stderr(text: str) -> tuple[str, int]:
    """stderr without onnxruntime's cpuinfo warnings (expected: /sys is kept out of the root)."""
    kept, noise = [], 0
    for line in text.splitlines():
        if CPUINFO_NOISE.match(line.strip()):
            noise += 1
        else:
            kept.append(line)
    return "\n".join(kept), noise


# 1. Prerequisites ---------------------------------------------------------------------------------


def prerequisites() -> None:
    if os.geteuid() != 0:
        raise CannotRun("needs root (debootstrap, chroot, mount namespaces, binfmt_misc); run it as root, as CI does")
    if platform_machine() != "x86_64":
        raise CannotRun(f"this check emulates aarch64 on x86-64; this machine is {platform_machine()}")
    missing = [p for p in PACKAGES if not dpkg_installed(p)]
    if missing:
        if not shutil.which("apt-get"):
            raise CannotRun(f"Debian packages {', '.join(missing)} are missing and there is no apt-get to install them")
        say(f"installing Debian packages {', '.join(missing)} (apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh(["apt-get", "update", "-qq"], "apt-get update", env=env)
        sh(["apt-get", "install", "-y", "-qq", *missing], "apt-get install", env=env)
    for tool in ("qemu-aarch64-static", "debootstrap", "unshare", "chroot"):
        if not shutil.which(tool):
            raise CannotRun(f"{tool} not found on PATH after installing {', '.join(PACKAGES)}")
    binfmt()
    version = sh(["qemu-aarch64-static", "--version"], "qemu-aarch64-static --version").stdout.splitlines()[0]
    say(f"emulator: {version}; binfmt_misc entry qemu-aarch64 enabled")


def platform_machine() -> str:
    return os.uname().machine


def dpkg_installed(package: str) -> bool:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip().endswith(" installed")


def binfmt() -> None:
    """Make sure aarch64 ELF files run through qemu via binfmt_misc, or say why they cannot."""
    mount = Path("/proc/sys/fs/binfmt_misc")
    if not (mount / "register").exists():
        say("binfmt_misc is not mounted; mounting it")
        result = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(mount)], capture_output=True, text=True)
        if result.returncode != 0 or not (mount / "register").exists():
            raise CannotRun(
                "emulation unavailable: binfmt_misc cannot be mounted in this sandbox "
                f"({result.stderr.strip() or 'no register file'}). It is required: debootstrap's second stage, "
                "pip and venv exec aarch64 programs, which qemu-user 7.2 cannot follow without binfmt_misc")
    entry = mount / "qemu-aarch64"
    if not entry.exists() or entry.read_text().splitlines()[0].strip() != "enabled":
        say("registering qemu-aarch64 with binfmt_misc")
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True, text=True)
        if not entry.exists():
            conf = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
            try:
                (mount / "register").write_text(conf.read_text().strip())
            except OSError as e:
                raise CannotRun(f"emulation unavailable: cannot register qemu-aarch64 with binfmt_misc: {e}") from None
    if not entry.exists() or entry.read_text().splitlines()[0].strip() != "enabled":
        raise CannotRun("emulation unavailable: the binfmt_misc entry qemu-aarch64 is not enabled")
    flags = next((l.split(":", 1)[1].strip() for l in entry.read_text().splitlines() if l.startswith("flags:")), "")
    if "F" not in flags:  # without F the interpreter is looked up inside the root, where it does not exist
        raise CannotRun(f"the binfmt_misc entry qemu-aarch64 lacks the F (fix binary) flag (flags {flags!r}); "
                        "re-register it from /usr/lib/binfmt.d/qemu-aarch64.conf")


# 2. The arm64 root ------------------------------------------------------------------------------


def root_is_complete(root: Path) -> bool:
    return (root / "etc" / "edgemode-arm64-root").is_file()


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if (line.split()[4] + "/").startswith(prefix)]


def remove_tree(path: Path) -> None:
    if mounts_under(path):
        raise CannotRun(f"{path} has mounts under it ({', '.join(mounts_under(path))}); unmount them and rerun")
    shutil.rmtree(path)


def build_root(root: Path, suite: str, mirror: str) -> None:
    for stale in root.parent.glob(root.name + ".tmp-*"):  # under the lock: any such directory is a crashed build
        say(f"removing an interrupted build {stale}")
        remove_tree(stale)
    if root.exists() and not root_is_complete(root):
        say(f"{root} exists but is not a complete root; removing it")
        remove_tree(root)
    if root.exists():
        say(f"reusing the arm64 root {root}")
        return
    tmp = root.parent / f"{root.name}.tmp-{os.getpid()}"
    say(f"building a Debian {suite} arm64 root in {tmp} (debootstrap, minbase + {','.join(INCLUDE)}; takes minutes)")
    started = time.time()
    log = root.parent / f"{root.name}.debootstrap.log"
    # A private mount namespace: whatever debootstrap mounts in the target (proc, sys) vanishes with it.
    argv = ["unshare", "--mount", "--propagation", "private", "debootstrap", "--arch=arm64", "--variant=minbase",
            f"--include={','.join(INCLUDE)}", suite, str(tmp), mirror]
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True)
        last = ""
        while proc.poll() is None:
            time.sleep(15)
            lines = log.read_text(errors="replace").splitlines()
            if lines and lines[-1] != last:
                last = lines[-1]
                say(f"  debootstrap: {last[:100]}")
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise CannotRun(f"debootstrap failed (exit {proc.returncode}); log {log}:\n{tail}")
    if mounts_under(tmp):
        raise CannotRun(f"debootstrap left mounts under {tmp}: {mounts_under(tmp)}")
    (tmp / "etc" / "edgemode-arm64-root").write_text(f"{suite} {mirror} built {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    os.rename(tmp, root)
    say(f"arm64 root built in {time.time() - started:.0f}s: {root} ({du(root)})")


def du(path: Path) -> str:
    result = subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True)
    return result.stdout.split()[0] if result.returncode == 0 else "?"


def host_ca_bundle() -> Path:
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), os.environ.get("REQUESTS_CA_BUNDLE"),
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise CannotRun("no CA bundle on the host to copy into the root (tried PIP_CERT, SSL_CERT_FILE, "
                    "REQUESTS_CA_BUNDLE, /etc/ssl/certs/ca-certificates.crt)")


def refresh_root_config(root: Path) -> None:
    """Per run: the host's CA bundle (for pip), DNS and hosts; /sys stays empty."""
    (root / CA.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(host_ca_bundle(), root / CA.lstrip("/"))
    for name in ("etc/resolv.conf", "etc/hosts"):
        target = root / name
        if target.is_symlink():
            target.unlink()
        if Path("/" + name).exists():
            shutil.copyfile("/" + name, target)
    sys_dir = root / "sys"
    if sys_dir.is_dir() and any(sys_dir.iterdir()):
        raise CannotRun(f"{sys_dir} is not empty (the host's /sys mounted into the root?); onnxruntime would segfault")


PASS_ENV = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "PIP_INDEX_URL",
            "PIP_EXTRA_INDEX_URL")


def emu(root: Path, argv: list[str], cpu: str | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run argv inside the root under qemu (binfmt): fresh /proc in a private namespace, no /sys."""
    env = [f"PATH={VENV}/bin:/usr/local/bin:/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8", f"PIP_CERT={CA}",
           "PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_NO_INPUT=1"]
    env += [f"{k}={os.environ[k]}" for k in PASS_ENV if k in os.environ]
    if cpu:
        env.append(f"QEMU_CPU={cpu}")
    # unshare without --fork execs: the shell, chroot, env and the program are one process, so a crash
    # shows as a negative return code; the proc mount lives only in that process's mount namespace.
    full = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
            'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"', str(root), "/usr/bin/env", "-i", *env, *argv]
    try:
        return subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(full, 124, "", f"timed out after {timeout:.0f}s")


def emu_ok(root: Path, argv: list[str], what: str, cpu: str | None = None, timeout: float = 1800) -> str:
    result = emu(root, argv, cpu, timeout)
    if result.returncode != 0:
        err, _ = clean_stderr(result.stderr)
        raise CannotRun(f"{what} failed in the arm64 root ({describe_rc(result.returncode)}):\n"
                        + "\n".join((result.stdout + "\n" + err).strip().splitlines()[-25:]))
    return result.stdout


def describe_rc(rc: int) -> str:
    if rc < 0:
        return f"crashed: killed by signal {-rc}" + (" (segfault)" if rc == -11 else "")
    return f"exit {rc}"


# 3. The venv in the root ------------------------------------------------------------------------


def pins() -> list[str]:
    """edgemode's base dependencies, pinned to the x86 project venv's versions where installed."""
    import importlib.metadata
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    out = []
    for dep in deps:
        name = re.match(r"[A-Za-z0-9_.\-]+", dep).group(0)
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(dep)
    return out


def ensure_venv(root: Path, requirements: list[str]) -> None:
    """The root's venv with the pinned dependencies; the marker file is written last, so a venv without
    it (an interrupted build) or with other pins is rebuilt from scratch."""
    wanted = "\n".join(["setuptools>=68", "wheel", *requirements]) + "\n"
    venv = root / VENV.lstrip("/")
    marker = venv / "edgemode-requirements.txt"
    if marker.is_file() and marker.read_text() == wanted:
        say(f"reusing the root's venv {VENV} ({', '.join(requirements)})")
        return
    if venv.exists():
        say(f"the root's venv {VENV} is incomplete or has other pins; rebuilding it")
        shutil.rmtree(venv)
    say(f"creating the root's venv {VENV} with {', '.join(requirements)} (aarch64 wheels from PyPI)")
    started = time.time()
    emu_ok(root, ["python3", "-m", "venv", VENV], "python3 -m venv")
    (venv / "requirements.txt").write_text(wanted)
    emu_ok(root, ["pip", "install", "-q", "-r", f"{VENV}/requirements.txt"], "pip install (dependencies)")
    marker.write_text(wanted)
    say(f"venv ready in {time.time() - started:.0f}s")


def install_edgemode(root: Path) -> str:
    """Copy this checkout's source into the root and pip-install it (runtime only, no deps)."""
    src = root / WORK.lstrip("/") / "src"
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True)
    if files.returncode == 0:
        names = [n for n in files.stdout.decode().split("\0") if n]
    else:  # not a git checkout: everything but caches and build output
        names = [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file()
                 and not {".git", "build", "__pycache__"} & set(p.relative_to(REPO).parts)
                 and ".egg-info" not in str(p)]
    for name in names:
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is skipped
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, src / name)
    say(f"installing edgemode from {REPO} ({len(names)} files) into the root's venv: pip install --no-deps")
    emu_ok(root, ["pip", "install", "-q", "--no-deps", "--force-reinstall", "--no-build-isolation", f"{WORK}/src"],
           "pip install edgemode")
    emu_ok(root, ["pip", "check"], "pip check (edgemode's dependencies in the root's venv)")
    versions = emu_ok(root, ["python", "-c", "import importlib.metadata as m, platform, sys; print(platform.machine(), "
                             "'python', sys.version.split()[0], *[n + ' ' + m.version(n) for n in "
                             "('edgemode', 'onnxruntime', 'numpy', 'tokenizers', 'onnx')])"], "version probe")
    return versions.strip()


# 4. Bundles on x86 --------------------------------------------------------------------------------


def make_bundles(work: Path, wrong: bool) -> dict[str, Path]:
    """Tiny random llama MoDE model (conftest.py's llama shape, init range 0.1), exported on x86."""
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from edgemode.export import export
    from edgemode.model import store
    from edgemode.quantize.int4 import Int4Config

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from conftest import randomize_gates, word_tokenizer

    vocab = 300
    config = LlamaConfig(hidden_size=64, num_hidden_layers=5, num_attention_heads=4, num_key_value_heads=2,
                         tie_word_embeddings=False, vocab_size=vocab, intermediate_size=96,
                         max_position_embeddings=256, initializer_range=0.1)
    torch.manual_seed(0)
    LlamaForCausalLM(config).eval().save_pretrained(work / "backbone")
    word_tokenizer(vocab).save_pretrained(work / "backbone")
    mode = store.create(work / "model", str(work / "backbone"), ["a", "b"], blocks=3, expert_layers=2, init="random", seed=0)
    randomize_gates(mode)  # gates that really mix, experts that change their block
    store.save(mode, work / "model")
    rng = np.random.default_rng(0)
    (work / "text.txt").write_text(" ".join(f"w{i}" for i in rng.integers(0, vocab - 2, TEXT_WORDS)) + "\n")
    bundles = {}
    for name, quant, int4 in (("fp32", "fp32", Int4Config()), ("int4", "int4", Int4Config()),
                              ("int4-acc0", "int4", Int4Config(accuracy_level=0))):
        say(f"exporting the {name} bundle on x86")
        bundles[name] = work / name
        export(work / "model", bundles[name], quant=quant, max_context=128, int4=int4)
    if wrong:
        bundles["int4-wrong"] = work / "int4-wrong"
        shutil.copytree(bundles["int4"], bundles["int4-wrong"])
        changed = perturb_int4_scales(bundles["int4-wrong"], WRONG_SCALE)
        say(f"--self-test-wrong: the emulator gets int4-wrong, {changed} int4 scale tensors of the backbone x{WRONG_SCALE} "
            "(manifest checksums updated, so only the numerics can tell)")
    return bundles


def perturb_int4_scales(bundle: Path, factor: float) -> int:
    """Multiply the scales of every MatMulNBits in the backbone graphs, in place; update the manifest."""
    import dataclasses

    import numpy as np
    import onnx

    from edgemode.bundle import manifest as bundle_manifest

    manifest = bundle_manifest.read(bundle)
    changed, touched = 0, set()
    for graph_name in manifest.graphs.backbone:
        model = onnx.load(str(bundle / graph_name), load_external_data=False)
        inits = {t.name: t for t in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type != "MatMulNBits" or len(node.input) < 3 or node.input[2] not in inits:
                continue
            tensor = inits[node.input[2]]
            info = {e.key: e.value for e in tensor.external_data}
            if tensor.data_type != onnx.TensorProto.FLOAT or "location" not in info:
                continue
            path, offset, length = bundle / info["location"], int(info.get("offset", 0)), int(info["length"])
            with open(path, "r+b") as f:
                f.seek(offset)
                scales = np.frombuffer(f.read(length), np.float32) * np.float32(factor)
                f.seek(offset)
                f.write(scales.astype(np.float32).tobytes())
            changed += 1
            touched.add(info["location"])
    if not changed:
        raise CannotRun("--self-test-wrong found no int4 scales to perturb in the backbone graphs")
    files = {**manifest.files, **bundle_manifest.describe_files(bundle, sorted(touched))}
    bundle_manifest.write(bundle, dataclasses.replace(manifest, files=files))
    return changed


# 5. The C app (issue 21) --------------------------------------------------------------------------


def install_app(root: Path, work: Path) -> dict[str, Path]:
    """Cross-compile examples/c/edgemode-app with its two aarch64 libraries (`make app APP_ARCH=aarch64`),
    copy them into the root, and export on x86 an int4 bundle whose tokenizer genai reads (BOS first)
    with its genai folder. Returns the bundle and the folder."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import bos_bpe_model

    from edgemode.export import export
    from edgemode.runtime.genai_folder import write

    say("building the C app for aarch64: make app APP_ARCH=aarch64 (Debian's gcc-aarch64-linux-gnu, PyPI's aarch64 wheels)")
    sh(["make", "-s", "-C", str(REPO), "app", "APP_ARCH=aarch64", f"VENV={sys.prefix}"], "make app APP_ARCH=aarch64")
    kit = REPO / "examples" / "c" / "build" / "aarch64"
    with open(kit / "edgemode-app", "rb") as f:
        header = f.read(20)
    if header[:4] != b"\x7fELF" or int.from_bytes(header[18:20], "little") != 183:  # EM_AARCH64
        raise CannotRun(f"{kit / 'edgemode-app'} is not an aarch64 ELF executable")
    target = root / APP.lstrip("/")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("edgemode-app", "libonnxruntime-genai.so", "libonnxruntime.so"):
        shutil.copy2(kit / name, target / name)
    export(bos_bpe_model(work / "app"), work / "app" / "int4", quant="int4", max_context=128)
    write(work / "app" / "int4", work / "app" / "genai", ["legal"])
    return {"bundle": work / "app" / "int4", "folder": work / "app" / "genai"}


def app_commands(bundle: str, folder: str) -> list[tuple[tuple, list[str]]]:
    """(key, argv): the C app (default prompt) and `edgemode run` (the same prompt) per set, and a tiny --bench."""
    out = []
    for domains in APP_SETS:
        d = ",".join(domains)
        out.append((("app", d), [f"{APP}/edgemode-app", folder, "--domains", d, "--max-new-tokens", str(APP_TOKENS)]))
        out.append((("run", d), ["edgemode", "run", bundle, "--domains", d, "--prompt", APP_PROMPT,
                                 "--max-new-tokens", str(APP_TOKENS)]))
    out.append((("bench",), [f"{APP}/edgemode-app", folder, "--bench", "--prompt-tokens", "8", "--new-tokens", "4",
                             "--repeat", "1"]))
    return out


def app_rows(cpu: str, runs: dict, x86_runs: dict) -> tuple[list[list[str]], list[str]]:
    """The C app on aarch64 must print what `edgemode run` prints on the same emulated CPU (the same
    onnxruntime build, so the same int4 kernels); against x86 it is reported. Its --bench must parse."""
    rows, failures = [], []
    for domains in APP_SETS:
        d = ",".join(domains)
        app, run, x86 = runs[("app", d)], runs[("run", d)], x86_runs[("run", d)]
        problems = [f"{what} failed ({describe_rc(r['rc'])}): {r['stderr'][-300:]}"
                    for what, r in (("edgemode-app", app), ("edgemode run", run)) if r["rc"] != 0]
        if not problems and (not app["stdout"].strip() or app["stdout"] != run["stdout"]):
            problems.append(f"edgemode-app printed {app['stdout'].strip()!r}, edgemode run {run['stdout'].strip()!r}")
        rows.append([cpu, "{" + d + "}", "same" if app["stdout"] == run["stdout"] else "DIFFERS",
                     "same" if app["stdout"] == x86["stdout"] else "differs", f"{app['seconds']:.0f}s",
                     "FAIL" if problems else "PASS"])
        failures += [f"{cpu} C app {{{d}}}: {p}" for p in problems]
    bench = runs[("bench",)]
    try:
        result = json.loads(bench["stdout"])
        if result["arch"] != "aarch64" or not all(result[k] > 0 for k in ("load_s", "ttft_ms", "decode_tok_s", "peak_rss_mb")):
            failures.append(f"{cpu} C app --bench: {bench['stdout'].strip()}")
    except (ValueError, KeyError, TypeError):
        failures.append(f"{cpu} C app --bench printed no JSON ({describe_rc(bench['rc'])}): {bench['stderr'][-300:]}")
    return rows, failures


def run_all(runner, commands: list[tuple[tuple, list[str]]]) -> dict:
    out = {}
    for key, argv in commands:
        started = time.time()
        r = runner(argv)
        out[key] = {"rc": r.returncode, "stdout": r.stdout, "stderr": clean_stderr(r.stderr)[0].strip(),
                    "seconds": time.time() - started}
    return out


# 6. Running the checks ----------------------------------------------------------------------------


def logits_helper(argv: list[str]) -> None:
    """`_logits OUT TEXT BUNDLE...`: logits (prefill then cached one-token steps) for each bundle and S.

    Runs inside the emulator and on x86 alike; imports only the runtime (numpy, onnxruntime).
    """
    import numpy as np

    from edgemode.runtime import Engine

    out, text, bundles = argv[0], Path(argv[1]).read_text(), argv[2:]
    arrays = {}
    for entry in bundles:  # PATH or PATH@KV
        bundle, _, kv = entry.partition("@")
        with Engine.load(bundle, [], kv=kv or "fp32") as engine:
            ids = np.asarray(engine.encode(text)[:LOGIT_TOKENS], np.int64)
            for domains in DOMAIN_SETS:
                engine.set_domains(domains)
                cache = engine.new_cache(len(ids))
                parts = [engine.forward(ids[:LOGIT_PREFILL], cache)]
                parts += [engine.forward(ids[i : i + 1], cache) for i in range(LOGIT_PREFILL, len(ids))]
                arrays[f"{Path(entry).name}|{','.join(domains)}"] = np.concatenate(parts).astype(np.float32)
    with open(out, "wb") as f:
        np.savez(f, **arrays)


def hwcaps(root: Path, cpu: str) -> dict:
    from edgemode.devices.cpu import ARM64_HWCAPS  # the bits edgemode's own CPU report reads

    code = ("import ctypes; g = ctypes.CDLL(None).getauxval; g.restype = ctypes.c_ulong; "
            f"print(' '.join(n for n, (k, b) in {ARM64_HWCAPS!r}.items() if g(k) & b))")
    result = emu(root, ["python3", "-c", code], cpu, timeout=120)
    if result.returncode != 0:
        raise CannotRun(f"QEMU_CPU={cpu}: the emulator does not run ({describe_rc(result.returncode)}): "
                        f"{clean_stderr(result.stderr)[0].strip()[-400:]}")
    present = set(result.stdout.split())
    return {"dotprod": "asimddp" in present, "sve": "sve" in present, "i8mm": "i8mm" in present}


def commands(bundles: dict[str, str], text: str) -> list[tuple[tuple, list[str]]]:
    """(key, edgemode argv) for everything run on each side; `bundles` maps bundle name -> path on that side."""
    out = []
    for name in GATED:
        bundle, kv = KV_CHECKED.get(name, (name, None))
        kv_args = ["--kv", kv] if kv else []
        out.append(((name, "inspect"), ["edgemode", "inspect", "--verify", bundles[bundle]]))
        for domains in DOMAIN_SETS:
            d = ",".join(domains)
            out.append(((name, "run", d), ["edgemode", "run", bundles[bundle], "--domains", d, "--prompt", PROMPT,
                                           "--max-new-tokens", "8", *kv_args]))
            out.append(((name, "eval", d), ["edgemode", "eval", bundles[bundle], "--domains", d, "--text-file", text,
                                            "--window", str(WINDOW), "--json", *kv_args]))
    return out


def logits_key(bundle: str, name: str, domains: str) -> str:
    """The logits helper's key for gated `name` run on the bundle named `bundle`."""
    kv = KV_CHECKED.get(name, (None, None))[1]
    return f"{bundle}{'@' + kv if kv else ''}|{domains}"


def run_side(label: str, runner, bundles: dict[str, str], text: str, logits_out: str, logits_bundles: list[str],
             helper: str) -> dict:
    """Run every command through `runner(argv) -> CompletedProcess`; collect outputs and failures."""
    results, failures, noise = {}, [], 0
    for key, argv in commands(bundles, text):
        started = time.time()
        r = runner(argv)
        err, n = clean_stderr(r.stderr)
        noise += n
        results[key] = {"rc": r.returncode, "stdout": r.stdout, "stderr": err.strip(), "seconds": time.time() - started}
        if r.returncode != 0:
            failures.append(f"{label}: {' '.join(argv[:2])} {key}: {describe_rc(r.returncode)}: {err.strip()[-300:]}")
    started = time.time()
    r = runner(["python", helper, "_logits", logits_out, text, *logits_bundles])
    err, n = clean_stderr(r.stderr)
    noise += n
    results["logits"] = {"rc": r.returncode, "stderr": err.strip(), "seconds": time.time() - started}
    if r.returncode != 0:
        failures.append(f"{label}: logits dump: {describe_rc(r.returncode)}: {err.strip()[-500:]}")
    say(f"{label}: {len(results)} commands done" + (f", {len(failures)} failed" if failures else "")
        + (f" (filtered {noise} onnxruntime cpuinfo warnings: /sys is kept out of the root)" if noise else ""))
    return {"results": results, "failures": failures}


def ppl_of(side: dict, key: tuple) -> float | None:
    r = side["results"].get(key)
    if not r or r["rc"] != 0:
        return None
    try:
        return float(json.loads(r["stdout"].strip().splitlines()[-1])["ppl"])
    except (ValueError, KeyError, IndexError):
        return None


def logit_metrics(got, want) -> dict:
    import numpy as np

    delta = got.astype(np.float64) - want.astype(np.float64)
    return {"max_rel_error": float(np.abs(delta).max() / max(np.abs(want).max(), 1e-12)),
            "rms_rel_error": float(np.sqrt((delta**2).mean() / max((want.astype(np.float64) ** 2).mean(), 1e-24))),
            "top1": float((got.argmax(-1) == want.argmax(-1)).mean()),
            "identical": bool(np.array_equal(got, want))}


def load_npz(path: Path) -> dict:
    import numpy as np

    if not path.is_file():
        return {}
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def compare(cpu: str, arm: dict, x86: dict, arm_logits: dict, x86_logits: dict, int4_ppl_tol: float,
            arm_names: dict[str, str]) -> tuple[list[list[str]], list[str]]:
    rows, failures = [], list(arm["failures"])
    for name in GATED:
        inspect_ok = arm["results"][(name, "inspect")]["rc"] == 0
        for domains in DOMAIN_SETS:
            d = ",".join(domains)
            label = "{" + d + "}"
            problems = []
            run_a, run_x = arm["results"][(name, "run", d)], x86["results"][(name, "run", d)]
            if run_a["rc"] != 0:
                run_cell = "FAIL"
            elif run_a["stdout"] == run_x["stdout"]:
                run_cell = "same"
            else:
                run_cell = "differs"
                if name == "fp32":
                    problems.append(f"run text differs from x86: {run_a['stdout'].strip()!r} vs {run_x['stdout'].strip()!r}")
            pa, px = ppl_of(arm, (name, "eval", d)), ppl_of(x86, (name, "eval", d))
            tol = FP32_PPL_TOL if name == "fp32" else int4_ppl_tol
            if pa is None or px is None:
                rel = math.nan
                problems.append("no perplexity (eval failed)")
            else:
                rel = abs(pa - px) / px
                if not rel <= tol:
                    problems.append(f"perplexity {pa:.6f} vs x86 {px:.6f}: relative difference {rel:.2e} exceeds {tol:.2e}")
            metric, limit = FP32_LOGITS if name == "fp32" else INT4_LOGITS
            bundle = KV_CHECKED.get(name, (name, None))[0]
            ka, kx = logits_key(arm_names[bundle], name, d), logits_key(bundle, name, d)
            if ka in arm_logits and kx in x86_logits:
                m = logit_metrics(arm_logits[ka], x86_logits[kx])
                value, top1 = m[metric], m["top1"]
                if not value <= limit:
                    problems.append(f"logits {metric} {value:.2e} vs x86 exceeds the exporter's {limit}")
            else:
                value, top1 = math.nan, math.nan
                problems.append("no logits")
            if not inspect_ok:
                problems.append("inspect --verify failed")
            ok = not problems
            rows.append([cpu, name, label, "ok" if inspect_ok else "FAIL", run_cell, fmt(pa, ".4f"), fmt(px, ".4f"),
                         fmt(rel, ".1e"), f"{tol:.1e}", f"{value:.1e}" if not math.isnan(value) else "-",
                         f"{metric.split('_')[0]}<={limit}", f"{top1:.2f}" if not math.isnan(top1) else "-",
                         "PASS" if ok else "FAIL"])
            failures += [f"{cpu} {name} {label}: {p}" for p in problems]
    return rows, failures


def fmt(value, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpus", default="cortex-a76,cortex-a72", help="QEMU_CPU models to run under.")
    parser.add_argument("--root", type=Path, default=CACHE / "arm64-root", help="The cached arm64 root.")
    parser.add_argument("--suite", default="bookworm", help="Debian suite for the root.")
    parser.add_argument("--mirror", default=os.environ.get("EDGEMODE_DEBIAN_MIRROR", "http://deb.debian.org/debian"))
    parser.add_argument("--jobs", type=int, default=2, help="CPU models emulated at once.")
    parser.add_argument("--self-test-wrong", action="store_true",
                        help="Give the emulator an int4 bundle with perturbed weights; the check must fail.")
    args = parser.parse_args()
    cpus = [c for c in args.cpus.split(",") if c]
    root = args.root.expanduser().resolve()
    root.parent.mkdir(parents=True, exist_ok=True)
    lock = open(root.parent / f"{root.name}.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say(f"another arm64 check holds {lock.name}; waiting for it")
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        return check(args, cpus, root)
    except CannotRun as e:
        print(f"arm64 check: CANNOT RUN: {e}", flush=True)
        print("arm64 check: FAILED (the aarch64 check did not run; not skipping)", flush=True)
        return 2


def check(args, cpus: list[str], root: Path) -> int:
    say(f"checkout {REPO}; x86 python {sys.executable}")
    try:
        import edgemode

        where = Path(edgemode.__file__).resolve().parent.parent
        if where != REPO:
            say(f"WARNING: the x86 venv's edgemode is {where}, not this checkout {REPO} (run `make install` here)")
    except ImportError:
        raise CannotRun(f"edgemode is not installed in {sys.executable}'s environment; run `make install` first") from None
    prerequisites()
    build_root(root, args.suite, args.mirror)
    refresh_root_config(root)
    features = {}
    for cpu in cpus:
        features[cpu] = hwcaps(root, cpu)
        say(f"QEMU_CPU={cpu}: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in features[cpu].items()))
        if cpu in EXPECT_DOTPROD and features[cpu]["dotprod"] != EXPECT_DOTPROD[cpu]:
            raise CannotRun(f"QEMU_CPU={cpu} should {'' if EXPECT_DOTPROD[cpu] else 'not '}have dotprod but the emulator "
                            "reports otherwise: the CPU model did not take effect")
    requirements = pins()
    ensure_venv(root, requirements)
    work = root / WORK.lstrip("/")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    arm_versions = install_edgemode(root)
    say(f"arm64 root: {arm_versions}")
    bundles = make_bundles(work, args.self_test_wrong)
    app = install_app(root, work)
    shutil.copy2(Path(__file__), work / "arm64_check.py")
    text = work / "text.txt"
    int4_arm = "int4-wrong" if args.self_test_wrong else "int4"
    arm_names = {"fp32": "fp32", "int4": int4_arm}

    say("x86 reference: the same commands in the project venv")
    x86_bin = Path(sys.executable).parent

    def x86_runner(argv):
        argv = [str(x86_bin / "edgemode")] + argv[1:] if argv[0] == "edgemode" else [sys.executable] + argv[1:]
        return subprocess.run(argv, capture_output=True, text=True, timeout=1800)

    x86 = run_side("x86-64", x86_runner, {n: str(bundles[n]) for n in ("fp32", "int4")}, str(text), str(work / "x86-logits.npz"),
                   [str(bundles[n]) for n in ("fp32", "int4", "int4-acc0")] + [f"{bundles['int4']}@int8"],
                   str(work / "arm64_check.py"))
    if x86["failures"]:
        raise CannotRun("the x86 reference failed:\n" + "\n".join(x86["failures"]))
    x86_app = run_all(x86_runner, app_commands(str(app["bundle"]), str(app["folder"])))
    x86_logits = load_npz(work / "x86-logits.npz")
    gaps = {}
    for domains in DOMAIN_SETS:
        d = ",".join(domains)
        pf, pq = ppl_of(x86, ("fp32", "eval", d)), ppl_of(x86, ("int4", "eval", d))
        gaps["{" + d + "}"] = abs(pq - pf) / pf
    int4_ppl_tol = max(gaps.values())
    say("x86 int4 vs fp32 perplexity: " + ", ".join(f"{k} {v:.2e}" for k, v in gaps.items())
        + f" -> int4 arm-vs-x86 perplexity tolerance {int4_ppl_tol:.2e}")

    def arm_side(cpu):
        say(f"QEMU_CPU={cpu}: running inspect/run/eval/logits in the emulator")
        arm_bundles = {n: f"{WORK}/{arm_names[n]}" for n in ("fp32", "int4")}
        side = run_side(f"aarch64 {cpu}", lambda argv: emu(root, argv, cpu), arm_bundles, f"{WORK}/text.txt",
                        f"{WORK}/arm-{cpu}.npz", [f"{WORK}/{n}" for n in ("fp32", int4_arm, "int4-acc0")]
                        + [f"{WORK}/{int4_arm}@int8"], f"{WORK}/arm64_check.py")
        # `edgemode bench` must say which int4 path this CPU takes (its timings mean nothing here)
        bench = emu(root, ["edgemode", "bench", arm_bundles["int4"], "--domains", "a", "--prompt-tokens", "8",
                           "--new-tokens", "2", "--repeat", "1", "--json"], cpu)
        path = json.loads(bench.stdout)["machine"]["int4_compute"] if bench.returncode == 0 else describe_rc(bench.returncode)
        if cpu in EXPECT_DOTPROD and path != ("int8" if EXPECT_DOTPROD[cpu] else "fp32"):
            side["failures"].append(f"aarch64 {cpu}: edgemode bench reports the int4 path {path!r}, "
                                    f"not what this CPU's dot-product support implies")
        side["int4_compute"] = path
        say(f"QEMU_CPU={cpu}: the C app and edgemode run in the emulator")
        side["app"] = run_all(lambda argv: emu(root, argv, cpu), app_commands(f"{WORK}/app/int4", f"{WORK}/app/genai"))
        return cpu, side, load_npz(work / f"arm-{cpu}.npz")

    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        arm = {cpu: (side, logits) for cpu, side, logits in pool.map(arm_side, cpus)}

    rows, failures, notes, app_table = [], [], [], []
    for cpu in cpus:
        side, logits = arm[cpu]
        r, f = compare(cpu, side, x86, logits, x86_logits, int4_ppl_tol, arm_names)
        rows += r
        failures += f
        r, f = app_rows(cpu, side["app"], x86_app)
        app_table += r
        failures += f
        seconds = sum(v["seconds"] for v in side["results"].values())
        notes.append(f"{cpu}: dotprod {'yes' if features[cpu]['dotprod'] else 'no'}, i8mm "
                     f"{'yes' if features[cpu]['i8mm'] else 'no'}, sve {'yes' if features[cpu]['sve'] else 'no'}; "
                     f"{len(side['results'])} emulated commands in {seconds:.0f}s; bench's int4 path: {side['int4_compute']}")
        for domains in DOMAIN_SETS:  # information: which int4 compute path did this CPU take?
            d = ",".join(domains)
            q, z, xq = logits.get(f"{int4_arm}|{d}"), logits.get(f"int4-acc0|{d}"), x86_logits.get(f"int4-acc0|{d}")
            if q is not None and z is not None and xq is not None:
                same = logit_metrics(q, z)
                cross = logit_metrics(z, xq)
                notes.append(f"  int4 {{{d}}}: accuracy_level 4 logits {'bit-identical to' if same['identical'] else 'differ from'}"
                             f" accuracy_level 0 (rms_rel {same['rms_rel_error']:.1e}); accuracy_level 0 vs x86 rms_rel "
                             f"{cross['rms_rel_error']:.1e}")
    header = ["cpu", "bundle", "S", "inspect", "run", "ppl arm", "ppl x86", "rel diff", "ppl tol", "logits",
              "limit", "top1", "result"]
    print()
    print(f"aarch64 under qemu vs x86-64 ({'SELF-TEST: wrong int4 bundle on the arm side' if args.self_test_wrong else 'same bundles on both sides'})")
    print(table(header, rows))
    print()
    print(f"examples/c/edgemode-app (aarch64, onnxruntime-genai's C library) vs edgemode run, int4, {APP_TOKENS} tokens of "
          f"{APP_PROMPT!r}")
    print(table(["cpu", "S", "vs run on this cpu", "vs run on x86 (not gated)", "app time", "result"], app_table))
    print()
    print("notes (not gated):")
    for note in notes:
        print(f"  {note}")
    print(f"  int4 perplexity tolerance = max over S of x86's |ppl_int4 - ppl_fp32| / ppl_fp32 = {int4_ppl_tol:.2e}")
    print(f"  total {time.time() - STARTED:.0f}s")
    if failures:
        print()
        for failure in failures:
            print(f"FAIL {failure}")
        print(f"arm64 check: FAILED ({len(failures)} problem(s)): edgemode on aarch64 disagrees with x86-64 beyond the "
              "tolerances above" + (" (expected: --self-test-wrong)" if args.self_test_wrong else ""), flush=True)
        return 1
    print("arm64 check: PASSED", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_logits":
        logits_helper(sys.argv[2:])
    else:
        sys.exit(main())
