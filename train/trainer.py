"""Stage 1 (one expert per domain) and stage 2 (composition) training, as in the MoDE paper.

Stage 1 trains one expert's layers and its gate rows with next-token loss on its domain, backbone
frozen and only that expert active. Stage 2 fine-tunes all gates (optionally the experts too) on a
balanced mixture of the domains plus general text, so the gates learn when to defer to the backbone.

Batches depend only on (seed, step), so a run is deterministic for a seed and a resumed run sees
the same batches it would have seen. Checkpoints are safetensors and JSON: no pickles.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from edgemode import EdgemodeError, read_json
from edgemode.bundle.names import gate_columns
from edgemode.cache import cache_dir
from edgemode.model import store
from edgemode.train import data


@dataclass(frozen=True)
class Schedule:
    steps: int | None = None  # stop after this many steps ...
    minutes: float | None = None  # ... or after this much training time (whichever is given)
    seed: int = 0
    lr: float = 3e-4
    batch: int = 8
    seq: int = 128
    warmup: int = 10
    checkpoint_every: int = 25

    def __post_init__(self):
        if (self.steps is None) == (self.minutes is None):
            raise EdgemodeError("give exactly one of --steps and --minutes")
        if (self.steps is not None and self.steps < 1) or (self.minutes is not None and not 0 < self.minutes < float("inf")):
            raise EdgemodeError("--steps and --minutes must be positive")
        if not 0 < self.lr < float("inf"):
            raise EdgemodeError(f"--lr must be a positive number, got {self.lr}")
        if self.batch < 1 or self.seq < 2:
            raise EdgemodeError(f"--batch must be >= 1 and --seq >= 2, got {self.batch} and {self.seq}")


def tokens(model_dir: Path, corpus: str) -> np.ndarray:
    """Token ids of a corpus's training split (a name such as 'legal') or of a UTF-8 text file, cached."""
    tokenizer_file = Path(model_dir) / "tokenizer.json"
    if corpus in data.DOCUMENTS:
        text = data.text(corpus, "train")
    elif Path(corpus).is_file():
        text = Path(corpus).read_text(encoding="utf-8")
    else:
        raise EdgemodeError(f"--data {corpus!r} is neither a corpus ({', '.join(data.DOCUMENTS)}) nor a text file")
    key = hashlib.sha256(tokenizer_file.read_bytes() + text.encode()).hexdigest()[:16]
    path = cache_dir() / "tokens" / f"{key}.npy"
    if not path.is_file():
        ids = Tokenizer.from_file(str(tokenizer_file)).encode(text, add_special_tokens=False).ids
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, np.asarray(ids, np.int32))
        tmp.replace(path)
    return np.load(path)


def batch(sources: list[np.ndarray], schedule: Schedule, step: int) -> torch.Tensor:
    """(batch, seq + 1) windows; row i comes from source i mod len(sources), so mixtures are balanced."""
    rng = np.random.default_rng([schedule.seed, step])
    rows = []
    for i in range(schedule.batch):
        source = sources[i % len(sources)]
        start = int(rng.integers(0, len(source) - schedule.seq - 1))
        rows.append(source[start : start + schedule.seq + 1])
    return torch.as_tensor(np.stack(rows).astype(np.int64))


class Checkpoint:
    """Optimizer state and progress of one training job, beside the model directory."""

    def __init__(self, model_dir: Path, job: str, schedule: Schedule):
        self.tensors = Path(model_dir) / "train" / f"{job}.optimizer.safetensors"
        self.progress = self.tensors.with_name(f"{job}.progress.json")
        self.schedule = schedule

    def read(self) -> dict | None:
        if not self.progress.is_file():
            return None
        progress = read_json(self.progress)
        if progress.get("schedule") != asdict(self.schedule):
            raise EdgemodeError(f"{self.progress} was made with other settings {progress['schedule']}; "
                                "delete it to start over, or pass the same settings to resume")
        return progress

    def write(self, optimizer: torch.optim.Optimizer, step: int, seconds: float, done: bool, loss: float) -> None:
        state = optimizer.state_dict()
        flat = {f"{i}.{k}": v for i, entry in state["state"].items() for k, v in entry.items()}
        self.tensors.parent.mkdir(parents=True, exist_ok=True)
        save_file(flat, str(self.tensors.with_suffix(".tmp")))
        self.tensors.with_suffix(".tmp").replace(self.tensors)
        progress = {"step": step, "seconds": seconds, "done": done, "loss": loss, "schedule": asdict(self.schedule)}
        self.progress.with_suffix(".tmp").write_text(json.dumps(progress, indent=2) + "\n")
        self.progress.with_suffix(".tmp").replace(self.progress)

    def restore(self, optimizer: torch.optim.Optimizer) -> None:
        flat = load_file(str(self.tensors))
        state = {}
        for key, value in flat.items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


def _run(mode, params, row_masks, sources, active, schedule: Schedule, checkpoint: Checkpoint, save, label: str):
    """The shared training loop: AdamW, linear warmup, grad clipping, progress, checkpoints, resume."""
    torch.manual_seed(schedule.seed)
    optimizer = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=0.0)
    progress = checkpoint.read()
    step, seconds = 0, 0.0
    if progress:
        if progress["done"]:
            print(f"{label}: already trained ({progress['step']} steps, loss {progress['loss']:.3f})", file=sys.stderr)
            return progress
        checkpoint.restore(optimizer)
        step, seconds = progress["step"], progress["seconds"]
        print(f"{label}: resuming at step {step}", file=sys.stderr)
    for p in mode.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    mode.train()
    loss_avg, last_print, tokens_done = math.nan, time.time(), 0
    while True:
        finished = step >= schedule.steps if schedule.steps else seconds >= schedule.minutes * 60
        if finished or (step and step % schedule.checkpoint_every == 0):
            save()
            checkpoint.write(optimizer, step, seconds, finished, loss_avg)
        if finished:
            break
        started = time.time()
        ids = batch(sources, schedule, step)
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr * min(1.0, (step + 1) / schedule.warmup)
        logits = mode(ids[:, :-1], domains=active)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for param, mask in row_masks:
            param.grad *= mask
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        seconds += time.time() - started
        tokens_done += ids[:, 1:].numel()
        loss_avg = loss.item() if math.isnan(loss_avg) else 0.9 * loss_avg + 0.1 * loss.item()
        if time.time() - last_print > 10 or step == 1:
            goal = f"{step}/{schedule.steps}" if schedule.steps else f"{step} ({seconds / 60:.1f}/{schedule.minutes} min)"
            print(f"{label}: step {goal}  loss {loss_avg:.3f}  {tokens_done / seconds:.0f} tok/s", file=sys.stderr, flush=True)
            last_print = time.time()
    mode.eval()
    print(f"{label}: done, {step} steps, loss {loss_avg:.3f}", file=sys.stderr, flush=True)
    return {"step": step, "loss": loss_avg}


def _gate_rows(mode, rows: list[int]):
    """(parameter, mask) pairs that let only `rows` of every gate learn."""
    masks = []
    for gate in mode.gates:
        keep = torch.zeros(gate.weight.shape[0], 1)
        keep[rows] = 1
        masks += [(gate.weight, keep), (gate.bias, keep[:, 0])]
    return masks


def train_expert(model_dir: str | Path, domain: str, schedule: Schedule, corpus: str | None = None) -> dict:
    """Stage 1: train `domain`'s expert and its gate rows on its corpus (default: the domain's own)."""
    model_dir = Path(model_dir)
    mode = store.load(model_dir)
    mode.check_domains([domain])
    sources = [tokens(model_dir, corpus or domain)]
    if len(sources[0]) <= schedule.seq + 1:
        raise EdgemodeError(f"the training text has {len(sources[0])} tokens; it needs more than --seq {schedule.seq}")
    params = [p for p in mode.experts[domain].parameters()] + [p for g in mode.gates for p in g.parameters()]
    masks = _gate_rows(mode, [1 + mode.domains.index(domain)])
    return _run(mode, params, masks, sources, [domain], schedule, Checkpoint(model_dir, f"expert-{domain}", schedule),
                lambda: store.save_expert(mode, model_dir, domain), f"train-expert {domain}")


def compose(model_dir: str | Path, domains: list[str], schedule: Schedule, unfreeze_experts: bool = False) -> dict:
    """Stage 2: fine-tune the gates (and with `unfreeze_experts` the experts) on domains + general text."""
    model_dir = Path(model_dir)
    mode = store.load(model_dir)
    domains = mode.check_domains(domains)
    if not domains:
        raise EdgemodeError("compose needs at least one domain")
    sources = [tokens(model_dir, d) for d in domains + ["general"]]
    params = [p for g in mode.gates for p in g.parameters()]
    if unfreeze_experts:
        params += [p for d in domains for p in mode.experts[d].parameters()]
    rows = gate_columns(mode.domains, domains)
    job = "compose-" + "-".join(sorted(domains)) + ("-unfrozen" if unfreeze_experts else "")
    return _run(mode, params, _gate_rows(mode, rows), sources, domains, schedule, Checkpoint(model_dir, job, schedule),
                lambda: store.save(mode, model_dir, experts=unfreeze_experts), "compose")
