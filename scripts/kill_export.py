"""Kill exports with SIGKILL at random moments and check that no half-written bundle ever loads.

Each trial starts `edgemode export` on a tiny random model, kills it after a random delay, then
checks the target: where there was no bundle, there is none or a complete one; where there was a
previous bundle, it is byte-for-byte intact or replaced by a complete new one. "Complete" means
`Engine.load(..., verify=True)` and a full sha256 check of every file pass.

    python scripts/kill_export.py [--trials 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from edgemode import EdgemodeError
from edgemode.bundle import manifest as bundle_manifest
from edgemode.model import create
from edgemode.runtime import Engine


def snapshot(path: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())} if path.exists() else {}


def loads_completely(path: Path) -> bool:
    try:
        manifest = bundle_manifest.read(path)
        bundle_manifest.verify(path, manifest, list(manifest.files), full=True)
        Engine.load(path, None, verify=True)
        return True
    except EdgemodeError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="kill-export-"))
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(root / "backbone")
    create(root / "model", str(root / "backbone"), ["a", "b"], blocks=2, expert_layers=1, init="random")
    command = [sys.executable, "-m", "edgemode", "export", str(root / "model"), "--quant", "int4", "--context", "64"]
    started = time.time()
    subprocess.run(command + ["-o", str(root / "previous")], check=True, capture_output=True)
    duration = time.time() - started
    previous = snapshot(root / "previous")
    outcomes = {"untouched": 0, "complete": 0, "absent": 0, "BROKEN": 0}
    for trial in range(args.trials):
        out = root / f"out{trial}"
        had_previous = trial % 2 == 1
        if had_previous:
            shutil.copytree(root / "previous", out)
        process = subprocess.Popen(command + ["-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, duration * 1.1))
        process.send_signal(signal.SIGKILL)
        process.wait()
        if had_previous and snapshot(out) == previous:
            outcome = "untouched"
        elif out.exists() and loads_completely(out):
            outcome = "complete"
        elif not had_previous and not out.exists():
            outcome = "absent"
        else:
            outcome = "BROKEN"
        outcomes[outcome] += 1
        print(f"trial {trial:3d} {'previous bundle' if had_previous else 'empty target  '} -> {outcome}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    leftovers = len(list(root.glob(".out*.tmp-*")))
    print(f"\n{args.trials} trials (export takes {duration:.1f} s): {outcomes}; temporary dirs left by killed exports: {leftovers}")
    shutil.rmtree(root, ignore_errors=True)
    sys.exit(1 if outcomes["BROKEN"] else 0)


if __name__ == "__main__":
    main()
