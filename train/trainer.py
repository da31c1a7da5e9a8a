"""Stage 1 (one expert per domain) and stage 2 (composition) training, as in the MoDE paper.

Stage 1 trains one expert's layers and its gate rows with next-token loss on its domain, backbone
frozen and only that expert active; optionally some rows of every batch rehearse general text
(`Rehearsal`). Stage 2 fine-tunes all gates (optionally the experts too) on a balanced mixture of
the domains plus general text, so the gates learn when to defer to the backbone; optionally the
high-resource domains come first (`high_first`).

A run is a number of steps. Batches depend only on (seed, step) and what the run has measured, so
the same schedule and data give bit-identical files, and a resumed run sees the batches it would
have seen. Wall-clock minutes are only a cap (`max_minutes`): when it bites the run stops early,
says so loudly, and the next call resumes it. Checkpoints are safetensors and JSON: no pickles.
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
from edgemode.cache import cache_dir
from edgemode.model import store
from edgemode.train import data
from edgemode.train import recipe


@dataclass(frozen=True)
class Schedule:
    """Everything that decides what a run computes (compared on resume)."""
    steps: int
    seed: int = 0
    lr: float = recipe.LR
    gate_lr: float = recipe.GATE_LR
    batch: int = 8
    seq: int = 128
    warmup: int = 10
    rehearsal: str = "none"  # stage 1: how the general-text rows are chosen: none, uniform or mix-cd
    rehearsal_rows: int = 2  # ... and how many of each batch's rows they are
    high_first: float = 0.0  # stage 2: fraction of the steps on the high-resource domains only
    checkpoint_every: int = 25

    def __post_init__(self):
        if not isinstance(self.steps, int) or self.steps < 1:
            raise EdgemodeError(f"--steps must be a positive whole number, got {self.steps}")
        for name, value in (("--lr", self.lr), ("--gate-lr", self.gate_lr)):
            if not 0 < value < float("inf"):
                raise EdgemodeError(f"{name} must be a positive number, got {value}")
        if self.batch < 1 or self.seq < 2:
            raise EdgemodeError(f"--batch must be >= 1 and --seq >= 2, got {self.batch} and {self.seq}")
        if self.rehearsal not in recipe.REHEARSAL:
            raise EdgemodeError(f"--rehearsal must be one of {', '.join(recipe.REHEARSAL)}, got {self.rehearsal!r}")
        if self.rehearsal != "none" and not 0 < self.rehearsal_rows < self.batch:
            raise EdgemodeError(f"--rehearsal-rows must be between 1 and --batch - 1 ({self.batch - 1}), "
                                f"got {self.rehearsal_rows}")
        if not 0 <= self.high_first < 1:
            raise EdgemodeError(f"--high-first must be a fraction in [0, 1), got {self.high_first}")


def tokens(model_dir: Path, corpus: str, part: str = "train") -> np.ndarray:
    """Token ids of a corpus's split (a name such as 'legal') or of a UTF-8 text file, cached."""
    tokenizer_file = Path(model_dir) / "tokenizer.json"
    if corpus in data.DOCUMENTS:
        text = data.text(corpus, part)
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


def batch(sources: list[np.ndarray], schedule: Schedule, step: int, rows: int | None = None) -> torch.Tensor:
    """(rows, seq + 1) windows; row i comes from source i mod len(sources), so mixtures are balanced."""
    rng = np.random.default_rng([schedule.seed, step])
    picked = []
    for i in range(schedule.batch if rows is None else rows):
        source = sources[i % len(sources)]
        start = int(rng.integers(0, len(source) - schedule.seq - 1))
        picked.append(source[start : start + schedule.seq + 1])
    return torch.as_tensor(np.stack(picked).astype(np.int64))


class Rehearsal:
    """General-text rows for stage 1, from a fixed pool of windows.

    uniform: any window of the pool. mix-cd (the seed paper's forgetting-aware rehearsal): the pool is
    split into loss bins by the backbone's loss on each window (once, at the start), and a bin is
    drawn in proportion to its estimated rate of collateral damage: the share of its rehearsed
    windows whose loss is now above the backbone's. The estimate uses only the losses the training
    forward pass computes anyway, so it costs nothing per step.
    """

    POOL = 128
    BINS = 4

    def __init__(self, mode, general: np.ndarray, schedule: Schedule, state: dict | None):
        self.schedule = schedule
        rng = np.random.default_rng([schedule.seed, 1 << 30])
        starts = rng.integers(0, len(general) - schedule.seq - 1, self.POOL)
        self.pool = torch.as_tensor(np.stack([general[s : s + schedule.seq + 1] for s in starts]).astype(np.int64))
        self.seen = np.zeros(self.BINS, np.int64)
        self.damaged = np.zeros(self.BINS, np.int64)
        if schedule.rehearsal == "mix-cd":
            self.base = self._backbone_losses(mode)
            self.bin = np.empty(self.POOL, np.int64)  # equal-size bins by loss rank: ties cannot empty a bin
            self.bin[np.argsort(self.base, kind="stable")] = np.arange(self.POOL) * self.BINS // self.POOL
            if state:
                self.seen, self.damaged = np.asarray(state["seen"]), np.asarray(state["damaged"])

    def _backbone_losses(self, mode) -> np.ndarray:
        print(f"rehearsal: scoring {self.POOL} general-text windows with the backbone (mix-cd bins)", file=sys.stderr,
              flush=True)
        with torch.no_grad():
            return np.concatenate([row_losses(mode, part, []).numpy()
                                   for part in self.pool.split(self.schedule.batch)])

    def pick(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.schedule.seed, step, 1])
        count = self.schedule.rehearsal_rows
        if self.schedule.rehearsal == "uniform":
            return rng.integers(0, self.POOL, count)
        rate = (self.damaged + 1) / (self.seen + 2)  # Beta(1, 1) prior: unseen bins start at 1/2
        bins = rng.choice(self.BINS, count, p=rate / rate.sum())
        return np.array([rng.choice(np.flatnonzero(self.bin == b)) for b in bins])

    def observe(self, picked: np.ndarray, losses: torch.Tensor) -> None:
        if self.schedule.rehearsal != "mix-cd":
            return
        for index, loss in zip(picked, losses.tolist()):
            self.seen[self.bin[index]] += 1
            self.damaged[self.bin[index]] += loss > self.base[index]

    def state(self) -> dict:
        return {"seen": self.seen.tolist(), "damaged": self.damaged.tolist()}


def row_losses(mode, ids: torch.Tensor, active: list[str], gate_weights: list | None = None) -> torch.Tensor:
    """Mean next-token loss of each row of `ids` (rows, seq + 1); `gate_weights` as MoDE.forward's."""
    logits = mode(ids[:, :-1], domains=active, gate_weights=gate_weights)
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    return losses.mean(dim=1)


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
        stored, wanted = dict(progress.get("schedule") or {}), asdict(self.schedule)
        if {**stored, "steps": None} != {**wanted, "steps": None}:
            raise EdgemodeError(f"{self.progress} was made with other settings {stored}; "
                                "delete it to start over, or pass the same settings to resume")
        if progress["step"] > self.schedule.steps:
            raise EdgemodeError(f"{self.progress} has trained {progress['step']} steps already, more than --steps "
                                f"{self.schedule.steps}; delete it to start over")
        # More steps continue a finished run: after warmup the rate is constant and batches depend only on
        # (seed, step), so N steps then M more are the same bits as N + M steps in one go.
        progress["done"] = progress["done"] and progress["step"] == self.schedule.steps
        return progress

    def write(self, optimizer: torch.optim.Optimizer, progress: dict) -> None:
        state = optimizer.state_dict()
        flat = {f"{i}.{k}": v for i, entry in state["state"].items() for k, v in entry.items()}
        self.tensors.parent.mkdir(parents=True, exist_ok=True)
        save_file(flat, str(self.tensors.with_suffix(".tmp")))
        self.tensors.with_suffix(".tmp").replace(self.tensors)
        text = json.dumps({**progress, "schedule": asdict(self.schedule)}, indent=2) + "\n"
        self.progress.with_suffix(".tmp").write_text(text)
        self.progress.with_suffix(".tmp").replace(self.progress)

    def restore(self, optimizer: torch.optim.Optimizer) -> None:
        flat = load_file(str(self.tensors))
        state = {}
        for key, value in flat.items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


def train_loop(mode, groups, row_masks, next_batch, active, schedule: Schedule, checkpoint: Checkpoint, save, label: str,
               max_minutes: float | None, rehearsal: Rehearsal | None = None, threads: int = recipe.THREADS):
    """The shared training loop: AdamW, linear warmup, grad clipping, progress, checkpoints, resume, time cap.

    `groups` are (parameters, learning rate) pairs. `threads` is fixed (not the machine's core count)
    because it changes the bits of the result."""
    if max_minutes is not None and not 0 < max_minutes < float("inf"):
        raise EdgemodeError(f"--max-minutes must be a positive number, got {max_minutes}")
    if threads < 1:
        raise EdgemodeError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    torch.manual_seed(schedule.seed)
    groups = [(list(params), lr) for params, lr in groups if params]
    params = [p for group, _ in groups for p in group]
    optimizer = torch.optim.AdamW([{"params": group, "lr": lr, "base_lr": lr} for group, lr in groups], weight_decay=0.0)
    progress = checkpoint.read() or {"step": 0, "seconds": 0.0, "tokens": 0, "loss": math.nan, "done": False}
    if progress["done"]:
        print(f"{label}: already trained ({progress['step']} steps, {progress['tokens']} tokens, "
              f"loss {progress['loss']:.3f})", file=sys.stderr)
        return progress
    if progress.get("threads", threads) != threads:
        raise EdgemodeError(f"{checkpoint.progress} was trained with --threads {progress['threads']}; resume with the "
                            "same count (another count gives other bits), or delete it to start over")
    if progress["step"]:
        checkpoint.restore(optimizer)
        print(f"{label}: resuming at step {progress['step']}/{schedule.steps}", file=sys.stderr)
    if rehearsal is None and schedule.rehearsal != "none":
        raise EdgemodeError("rehearsal applies to train-expert only")
    for p in mode.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    mode.train()
    step, seconds, tokens_done, loss_avg = progress["step"], progress["seconds"], progress["tokens"], progress["loss"]
    started_call, last_print, capped = time.time(), 0.0, False

    def write(done: bool) -> None:
        save()
        checkpoint.write(optimizer, {"step": step, "seconds": seconds, "tokens": tokens_done, "loss": loss_avg,
                                     "done": done, "threads": threads,
                                     **({"rehearsal": rehearsal.state()} if rehearsal else {})})

    while step < schedule.steps:
        if step and step % schedule.checkpoint_every == 0:
            write(False)
        if max_minutes is not None and time.time() - started_call >= max_minutes * 60:
            capped = True
            break
        started = time.time()
        ids, picked = next_batch(step), None
        if rehearsal:
            picked = rehearsal.pick(step)
            ids = torch.cat([ids, rehearsal.pool[picked]])
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * min(1.0, (step + 1) / schedule.warmup)
        gate_weights = []
        losses = row_losses(mode, ids, active, gate_weights)
        loss = losses.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for param, mask in row_masks:
            param.grad *= mask
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if rehearsal:
            rehearsal.observe(picked, losses[-len(picked):].detach())
        step += 1
        seconds += time.time() - started
        tokens_done += ids[:, 1:].numel()
        loss_avg = loss.item() if math.isnan(loss_avg) else 0.9 * loss_avg + 0.1 * loss.item()
        if time.time() - last_print > 10 or step == schedule.steps:
            print(f"{label}: step {step}/{schedule.steps}  loss {loss_avg:.3f}  {tokens_done / seconds:.0f} tok/s"
                  + gate_shares(gate_weights, active), file=sys.stderr, flush=True)
            last_print = time.time()
    write(done=not capped)
    mode.eval()
    if capped:
        print(f"\n*** {label}: STOPPED BY --max-minutes {max_minutes} AFTER {step} OF {schedule.steps} STEPS ***\n"
              f"*** the model is saved but under-trained; run the same command again to finish ***\n",
              file=sys.stderr, flush=True)
    else:
        print(f"{label}: done, {step} steps, {tokens_done} tokens, loss {loss_avg:.3f}", file=sys.stderr, flush=True)
    return {"step": step, "tokens": tokens_done, "loss": loss_avg, "seconds": seconds, "done": not capped}


def gate_shares(weights: list, active: list[str]) -> str:
    """'  gates legal 0.50/0.47/0.52': each active expert's mean gate weight per block in a batch."""
    if not weights:
        return ""
    means = torch.stack([w.detach().mean(dim=(0, 1)) for w in weights])  # (blocks, 1 + active)
    return "  gates " + "  ".join(f"{d} " + "/".join(f"{v:.2f}" for v in means[:, j].tolist())
                                  for j, d in enumerate(active, start=1))


def _gate_rows(mode, rows: list[int]):
    """(parameter, mask) pairs that let only `rows` of every gate learn."""
    masks = []
    for gate in mode.gates:
        keep = torch.zeros(gate.weight.shape[0], 1)
        keep[rows] = 1
        masks += [(gate.weight, keep), (gate.bias, keep[:, 0])]
    return masks


def train_expert(model_dir: str | Path, domain: str, schedule: Schedule, corpus: str | None = None,
                 max_minutes: float | None = None, general: str = "general", threads: int = recipe.THREADS) -> dict:
    """Stage 1: train `domain`'s expert and its gate rows on its corpus (default: the domain's own).

    `corpus` and `general` (the rehearsal text) are corpus names or text files."""
    model_dir = Path(model_dir)
    mode = store.load(model_dir)
    mode.check_domains([domain])
    source = tokens(model_dir, corpus or domain)
    if len(source) <= schedule.seq + 1:
        raise EdgemodeError(f"the training text has {len(source)} tokens; it needs more than --seq {schedule.seq}")
    checkpoint = Checkpoint(model_dir, f"expert-{domain}", schedule)
    rehearsal = None
    if schedule.rehearsal != "none":
        torch.set_num_threads(threads)  # the pool's losses decide mix-cd's bins: the same bits as training
        rehearsal = Rehearsal(mode, tokens(model_dir, general), schedule, (checkpoint.read() or {}).get("rehearsal"))
    rows = schedule.batch - (schedule.rehearsal_rows if rehearsal else 0)
    groups = [(mode.experts[domain].parameters(), schedule.lr), (mode.gates.parameters(), schedule.gate_lr)]
    masks = _gate_rows(mode, [1 + mode.domains.index(domain)])
    return train_loop(mode, groups, masks, lambda step: batch([source], schedule, step, rows), [domain], schedule,
                      checkpoint, lambda: store.save_expert(mode, model_dir, domain), f"train-expert {domain}", max_minutes,
                      rehearsal, threads)


def high_resource(sizes: dict[str, int]) -> list[str]:
    """The domains with at least half the training tokens of the largest: what `high_first` trains first."""
    return [d for d, n in sizes.items() if 2 * n >= max(sizes.values())]


def compose(model_dir: str | Path, domains: list[str], schedule: Schedule, unfreeze_experts: bool = False,
            max_minutes: float | None = None, corpora: dict[str, str] | None = None, threads: int = recipe.THREADS) -> dict:
    """Stage 2: fine-tune the gates (and with `unfreeze_experts` the experts) on domains + general text.

    `corpora` maps a domain (or "general") to a corpus name or text file; by default each is its own corpus."""
    model_dir = Path(model_dir)
    mode = store.load(model_dir)
    domains = mode.check_domains(domains)
    if not domains:
        raise EdgemodeError("compose needs at least one domain")
    corpora = corpora or {}
    unknown = set(corpora) - set(domains) - {"general"}
    if unknown:
        raise EdgemodeError(f"--data names {sorted(unknown)[0]!r}, which is not being composed")
    sources = {d: tokens(model_dir, corpora.get(d, d)) for d in [*domains, "general"]}
    first = high_resource({d: len(sources[d]) for d in domains}) + ["general"]
    phase_one = round(schedule.high_first * schedule.steps)
    if phase_one:
        print(f"compose: steps 1-{phase_one} on {', '.join(first)} (high-resource first), then all", file=sys.stderr)

    def next_batch(step: int) -> torch.Tensor:
        names = first if step < phase_one else list(sources)
        return batch([sources[n] for n in names], schedule, step)

    groups = [(mode.gates.parameters(), schedule.gate_lr)]
    if unfreeze_experts:
        groups.append(([p for d in domains for p in mode.experts[d].parameters()], schedule.lr))
    rows = domains.columns
    job = "compose-" + "-".join(sorted(domains)) + ("-unfrozen" if unfreeze_experts else "")
    return train_loop(mode, groups, _gate_rows(mode, rows), next_batch, domains, schedule, Checkpoint(model_dir, job, schedule),
                      lambda: store.save(mode, model_dir, experts=unfreeze_experts), "compose", max_minutes, threads=threads)
