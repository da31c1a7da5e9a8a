"""scripts/baselines.py end to end on a tiny backbone: every method trains on the same number of
updates and tokens, the sweep keeps the rate with the lowest validation perplexity, every row is
scored on every column, and LoRA gets as many trainable parameters as one expert."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from conftest import make_backbone

SCRIPT = Path(__file__).parent.parent / "scripts" / "baselines.py"


def progress(root: Path, run: str, job: str) -> dict:
    return json.loads((root / run / "train" / f"{job}.progress.json").read_text())


def test_baselines_are_update_matched_swept_and_scored_on_every_column(tmp_path):
    backbone = make_backbone("llama", tmp_path / "backbone")
    root = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--backbone", str(tmp_path / "backbone"), "--root", str(root), "--steps", "2",
         "--compose-steps", "2", "--sweep-steps", "1", "--tokens", "64", "--rehearsal", "uniform", "--curve", "1,3",
         "--plot", str(tmp_path / "curve.png")],
        capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    base, one, two = result["base"], result["one"], result["two"]
    columns = [f"{c} {p}" for c in ("legal", "med", "general") for p in ("heldout", "unseen")]
    for row in [base, *one["legal"].values(), *one["med"].values(), *two.values()]:
        assert all(math.isfinite(row[c]) and row[c] > 1 for c in columns)

    # The sweep: three rates a method after --sweep-steps updates, the kept one the lowest on the
    # validation split; only the kept rate's run goes on.
    assert result["sweep_steps"] == 1
    for method, rates in result["sweep"].items():
        assert len(rates) == 3
        assert f"{result['rates'][method]:g}" == min(rates, key=rates.get)
        job = "expert-legal" if method == "mode" else method
        for rate in set(rates) - {f"{result['rates'][method]:g}"}:
            assert progress(root, f"{method}1-legal-lr{rate}", job)["step"] == 1

    # Update-matched: the same updates and tokens for every method, one domain and two.
    rate = {m: f"{lr:g}" for m, lr in result["rates"].items()}
    for domain in ("legal", "med"):
        runs = [progress(root, f"mode1-{domain}-lr{rate['mode']}", f"expert-{domain}")] + [
            progress(root, f"{m}1-{domain}-lr{rate[m]}", m) for m in ("lora", "full")]
        steps = 3 if domain == "legal" else 2  # the curve extends the first domain's runs
        assert [(r["step"], r["tokens"]) for r in runs] == [(steps, runs[0]["tokens"])] * 3
    mode2 = progress(root, f"mode2-2-lr{rate['mode']}", "compose-legal-med")
    stage_one = 2 * progress(root, f"mode1-med-lr{rate['mode']}", "expert-med")["tokens"]
    for m in ("lora", "full"):
        run = progress(root, f"{m}2-2-lr{rate[m]}", m)
        assert (run["step"], run["tokens"]) == (2 + 2 + 2, stage_one + mode2["tokens"])

    # Sizes: LoRA's rank matches one expert's parameters to within one rank's worth.
    expert, lora = one["legal"]["mode"]["trainable"], one["legal"]["lora"]["trainable"]
    assert abs(lora - expert) <= lora / result["lora_rank"] / 2
    assert one["legal"]["full"]["trainable"] == sum(p.numel() for p in backbone.parameters())
    files = json.loads((root / f"mode2-2-lr{rate['mode']}-int4" / "manifest.json").read_text())["files"]
    assert one["legal"]["mode"]["bytes"] == sum(f["bytes"] for n, f in files.items() if n.startswith("expert.legal.")) > 0
    assert two["full"]["bytes"] == sum(f["bytes"] for n, f in files.items() if n.startswith(("backbone.", "embedding.", "head.")))

    assert sorted(map(int, result["curve"]["lora"])) == [1, 2, 3]
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| MoDE-2 {legal,med} |" in done.stdout and "| full fine-tuning |" in done.stdout


def test_expert_ab_scores_each_step_count_and_keeps_them(tmp_path):
    make_backbone("llama", tmp_path / "backbone")
    command = [sys.executable, str(SCRIPT.with_name("expert_ab.py")), "run", "--backbone", str(tmp_path / "backbone"),
               "--root", str(tmp_path / "ab"), "--steps", "1,2", "--tokens", "64", "--gate-init", "-2", "--threads", "1"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    lines = first.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["run 1 steps", "run 2 steps"]
    scores = json.loads((tmp_path / "ab" / "run" / "scores.json").read_text())
    base = json.loads((tmp_path / "ab" / "backbone-legal-64.json").read_text())
    assert sorted(scores) == ["1", "2"] and set(scores["2"]) == set(base) == {
        "legal heldout", "legal unseen", "general heldout", "general unseen", "legal valid"}
    assert scores["2"]["legal heldout"] != scores["1"]["legal heldout"] != base["legal heldout"]
    assert progress(tmp_path / "ab", "run", "expert-legal")["step"] == 2
    again = subprocess.run(command, capture_output=True, text=True, timeout=900)  # kept: nothing trains again
    assert again.returncode == 0 and again.stdout == first.stdout and "step 1/" not in again.stderr
