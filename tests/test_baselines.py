"""scripts/baselines.py end to end on a tiny backbone: every method trains, is scored on every
column, and LoRA gets as many trainable parameters as one expert (to within one rank's worth)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from conftest import make_backbone

SCRIPT = Path(__file__).parent.parent / "scripts" / "baselines.py"


def test_baselines_script_runs_every_method_on_the_same_columns(tmp_path):
    backbone = make_backbone("llama", tmp_path / "backbone")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--backbone", str(tmp_path / "backbone"), "--root", str(tmp_path / "runs"),
         "--expert-steps", "2", "--compose-steps", "2", "--tokens", "64", "--rehearsal", "none,mix-cd",
         "--compose-on", "none"],
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])["rows"]
    names = list(rows)
    assert names[:3] == ["backbone", "MoDE-1, rehearsal none", "MoDE-1, rehearsal mix-cd"]
    assert names[3:5] == ["MoDE-2, rehearsal none, high-first 0", "MoDE-2, rehearsal none, high-first 0.5"]
    assert names[5].startswith("LoRA r=") and names[6] == "full fine-tuning"
    columns = [k for k in rows["backbone"] if k not in ("trainable", "bytes")]
    assert len(columns) == 6
    for row in rows.values():
        assert all(math.isfinite(row[c]) and row[c] > 1 for c in columns)
    expert = rows["MoDE-1, rehearsal none"]["trainable"] // 2
    rank = int(names[5].split("=")[1])
    per_rank = rows[names[5]]["trainable"] // rank
    assert abs(rows[names[5]]["trainable"] - expert) <= per_rank / 2
    assert rows["full fine-tuning"]["trainable"] == sum(p.numel() for p in backbone.parameters())
    files = json.loads((tmp_path / "runs" / "mode-none-high0-int4" / "manifest.json").read_text())["files"]
    experts = sum(f["bytes"] for name, f in files.items() if name.startswith("expert."))
    assert rows["MoDE-2, rehearsal none, high-first 0"]["bytes"] == experts > 0
    model = sum(f["bytes"] for name, f in files.items() if name.startswith(("backbone.", "embedding.", "head.")))
    assert rows["full fine-tuning"]["bytes"] == model
    assert "| method |" in done.stdout
