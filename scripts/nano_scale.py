"""Scale check: a Nano-1-shaped MoDE (1.8B Llama-shaped backbone, random weights, 2 experts)
exported per component to int4 on this machine, then a few decode steps.

Records export time, export peak RSS, bundle size and decode tokens/s (the export skips its
PyTorch parity check, see below). Every step is its own
process (`os.wait4` gives that process's own peak RSS). Work files go to --workdir (about 25 GB:
the fp32 backbone, the model directory and the bundle), never into the repo.

    python scripts/nano_scale.py [--workdir ~/.cache/edgemode/scale] [--blocks 7] [--expert-layers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from edgemode.bundle import manifest as bundle_manifest
from edgemode.bundle.manifest import Shape
from edgemode.devices import planner


def run(args: list[str], capture: bool = False) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB and stdout of one child process; fails loudly."""
    print("$", " ".join(args), file=sys.stderr, flush=True)
    started = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.PIPE if capture else None, text=True)
    out = child.stdout.read() if capture else ""
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        sys.exit(f"failed with status {status}: {' '.join(args)}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024, out


def make_backbone(path: Path, shape: Shape) -> None:
    """A random-weight Llama with the Nano-1 stand-in's shape (see edgemode.devices.planner.SHAPES)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=shape.hidden_size, num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads,
                         num_key_value_heads=shape.kv_heads, head_dim=shape.head_dim, intermediate_size=shape.intermediate_size,
                         vocab_size=shape.vocab_size, tie_word_embeddings=shape.tied_embeddings,
                         max_position_embeddings=4096)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "edgemode" / "scale")
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--expert-layers", type=int, default=1)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    shape = planner.SHAPES["nano-1"]
    backbone, model, bundle = (args.workdir / n for n in ("nano-1-backbone", "nano-1-mode", "nano-1-int4"))
    edgemode = [sys.executable, "-m", "edgemode"]
    if not (backbone / "config.json").exists():
        print(f"making a random {shape} backbone in {backbone}", file=sys.stderr)
        make_backbone(backbone, shape)
    if not (model / "mode.json").exists():
        run(edgemode + ["new", str(model), "--backbone", str(backbone), "--domains", "a,b", "--blocks", str(args.blocks),
                        "--expert-layers", str(args.expert_layers), "--init", "random"])
    # No parity check: at random init, 28 layers leave logits so flat that int4 noise dominates them
    # (measured rms 0.73 of the logit scale, top-1 0.16), which the check rightly refuses.
    export_s, export_rss, _ = run([sys.executable, "-c", "import sys; from edgemode.export import export; "
                                   "export(sys.argv[1], sys.argv[2], quant='int4', max_context=int(sys.argv[3]), check=False)",
                                   str(model), str(bundle), str(args.context)])
    bundle_mb = sum(f.stat().st_size for f in bundle.iterdir()) / 2**20
    rows = {"export_s": round(export_s, 1), "export_peak_rss_mb": round(export_rss), "bundle_mb": round(bundle_mb)}
    for domains in ("", "a,b"):
        _, _, out = run(edgemode + ["bench", str(bundle), "--domains", domains, "--prompt-tokens", "32", "--new-tokens", "16",
                                    "--repeat", "1", "--threads", str(args.threads), "--json"], capture=True)
        result = json.loads(out)
        rows[f"{{{domains}}}"] = {k: round(result[k], 2) for k in ("load_s", "ttft_ms", "decode_tok_s", "peak_rss_mb")}
    manifest = bundle_manifest.read(bundle)
    rows["planned_mb"] = {f"{{{d}}}": round(planner.plan(manifest.backbone, manifest.layout, n, manifest.quantization,
                                                          48)["total_bytes"] / 2**20)
                          for d, n in (("", 0), ("a,b", 2))}
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
