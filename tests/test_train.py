"""Training is a function of its settings and data: equal runs give bit-identical files, a resumed
run equals an uninterrupted one, and the time cap stops a run without changing what it computes."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from conftest import DOMAINS, make_backbone
from edgemode import EdgemodeError
from edgemode.model import store
from edgemode.train import trainer
from edgemode.train.trainer import Schedule

EXPERT = Schedule(steps=6, batch=4, seq=16, warmup=2, rehearsal="mix-cd", rehearsal_rows=1, checkpoint_every=2)
COMPOSE = Schedule(steps=4, batch=3, seq=16, warmup=2, high_first=0.5)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """An untrained model directory and word-level text for two domains and general text."""
    root = tmp_path_factory.mktemp("train")
    make_backbone("llama", root / "backbone")
    store.create(root / "model", str(root / "backbone"), DOMAINS, blocks=2, expert_layers=1, init="copy", seed=0)
    texts = {}
    for i, name in enumerate(DOMAINS + ["general"]):
        texts[name] = root / f"{name}.txt"
        texts[name].write_text(" ".join(f"w{(7 * j + 31 * i) % 250}" for j in range(600)))
    return root / "model", texts


def digests(model_dir) -> dict:
    files = sorted(model_dir.glob("experts/*.safetensors")) + [model_dir / "gates.safetensors"]
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def train_all(model_dir, texts, expert: Schedule = EXPERT, compose: Schedule = COMPOSE) -> dict:
    for domain in DOMAINS:
        trainer.train_expert(model_dir, domain, expert, str(texts[domain]), general=str(texts["general"]))
    trainer.compose(model_dir, DOMAINS, compose, corpora={n: str(p) for n, p in texts.items()})
    return digests(model_dir)


def copy_of(fresh, tmp_path):
    model_dir, texts = fresh
    shutil.copytree(model_dir, tmp_path / "model")
    return tmp_path / "model", texts


def test_two_runs_give_bit_identical_expert_and_gate_files(fresh, tmp_path):
    first = train_all(*copy_of(fresh, tmp_path / "one"))
    second = train_all(*copy_of(fresh, tmp_path / "two"))
    assert first == second
    assert len(first) == 3
    other_seed = train_all(*copy_of(fresh, tmp_path / "three"), expert=Schedule(**{**vars(EXPERT), "seed": 1}))
    assert other_seed != first  # the comparison can fail: the files do depend on the settings


def test_a_resumed_run_equals_an_uninterrupted_one(fresh, tmp_path, monkeypatch):
    whole = train_all(*copy_of(fresh, tmp_path / "whole"))
    model_dir, texts = copy_of(fresh, tmp_path / "cut")
    original = trainer.batch

    def interrupted(sources, schedule, step, rows=None):
        if step == 5:  # after the checkpoint at step 4, so resuming replays step 4
            raise KeyboardInterrupt
        return original(sources, schedule, step, rows)

    monkeypatch.setattr(trainer, "batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_expert(model_dir, DOMAINS[0], EXPERT, str(texts[DOMAINS[0]]), general=str(texts["general"]))
    monkeypatch.setattr(trainer, "batch", original)
    assert train_all(model_dir, texts) == whole


def test_the_time_cap_stops_loudly_and_the_next_call_finishes_the_same_run(fresh, tmp_path, capsys):
    whole = train_all(*copy_of(fresh, tmp_path / "whole"))
    model_dir, texts = copy_of(fresh, tmp_path / "capped")
    result = trainer.train_expert(model_dir, DOMAINS[0], EXPERT, str(texts[DOMAINS[0]]), max_minutes=1e-9,
                                  general=str(texts["general"]))
    assert not result["done"] and result["step"] < EXPERT.steps
    assert "STOPPED BY --max-minutes" in capsys.readouterr().err
    assert train_all(model_dir, texts) == whole


def test_mix_cd_counts_collateral_damage_per_loss_bin(fresh, tmp_path):
    model_dir, texts = copy_of(fresh, tmp_path)
    trainer.train_expert(model_dir, DOMAINS[0], EXPERT, str(texts[DOMAINS[0]]), general=str(texts["general"]))
    progress = trainer.read_json(model_dir / "train" / f"expert-{DOMAINS[0]}.progress.json")
    seen, damaged = progress["rehearsal"]["seen"], progress["rehearsal"]["damaged"]
    assert sum(seen) == EXPERT.steps * EXPERT.rehearsal_rows
    assert all(0 <= d <= s for d, s in zip(damaged, seen))


def test_high_resource_domains_are_those_with_half_the_largest_or_more():
    assert trainer.high_resource({"legal": 1000, "med": 300}) == ["legal"]
    assert trainer.high_resource({"legal": 1000, "med": 600}) == ["legal", "med"]


@pytest.mark.parametrize("settings, message", [
    (dict(steps=0), "--steps must be a positive"),
    (dict(steps=5, rehearsal="random"), "--rehearsal must be one of"),
    (dict(steps=5, batch=4, rehearsal="uniform", rehearsal_rows=4), "--rehearsal-rows must be between"),
    (dict(steps=5, high_first=1.0), "--high-first must be a fraction"),
])
def test_bad_schedules_are_refused(settings, message):
    with pytest.raises(EdgemodeError, match=message):
        Schedule(**settings)


def test_changed_settings_do_not_resume_silently(fresh, tmp_path):
    model_dir, texts = copy_of(fresh, tmp_path)
    trainer.train_expert(model_dir, DOMAINS[0], EXPERT, str(texts[DOMAINS[0]]), general=str(texts["general"]))
    for change, message in (({"gate_lr": 1e-2}, "made with other settings"), ({"steps": 5}, "has trained 6 steps")):
        with pytest.raises(EdgemodeError, match=message):
            trainer.train_expert(model_dir, DOMAINS[0], Schedule(**{**vars(EXPERT), **change}),
                                 str(texts[DOMAINS[0]]), general=str(texts["general"]))


def test_more_steps_continue_a_finished_run_to_the_same_bits(fresh, tmp_path):
    longer = Schedule(**{**vars(EXPERT), "steps": 9})
    whole = train_all(*copy_of(fresh, tmp_path / "whole"), expert=longer)
    model_dir, texts = copy_of(fresh, tmp_path / "extended")
    trainer.train_expert(model_dir, DOMAINS[0], EXPERT, str(texts[DOMAINS[0]]), general=str(texts["general"]))
    assert train_all(model_dir, texts, expert=longer) == whole
    assert whole != train_all(*copy_of(fresh, tmp_path / "short"))  # 9 steps are not 6: the check can fail


def test_stage_one_prints_the_gate_shares_and_the_gates_learn_at_their_own_rate(fresh, tmp_path, capsys):
    shares = {}
    for gate_lr in (1e-4, 1e-1):
        model_dir, texts = copy_of(fresh, tmp_path / f"gate-{gate_lr:g}")
        trainer.train_expert(model_dir, DOMAINS[0], Schedule(**{**vars(EXPERT), "gate_lr": gate_lr}),
                             str(texts[DOMAINS[0]]), general=str(texts["general"]))
        line = [x for x in capsys.readouterr().err.splitlines() if "step 6/6" in x][0]
        shares[gate_lr] = [float(v) for v in line.split(f"gates {DOMAINS[0]} ")[1].split("/")]
        assert len(shares[gate_lr]) == 2  # one share per block
    assert all(abs(v - 0.5) < 0.01 for v in shares[1e-4])  # an expert alone starts at half its block's gate
    assert all(abs(v - 0.5) > 0.05 for v in shares[1e-1])


def test_resuming_with_another_thread_count_is_refused(fresh, tmp_path):
    model_dir, texts = copy_of(fresh, tmp_path)
    trainer.train_expert(model_dir, DOMAINS[0], EXPERT, str(texts[DOMAINS[0]]), max_minutes=1e-9,
                         general=str(texts["general"]), threads=1)
    with pytest.raises(EdgemodeError, match="trained with --threads 1"):
        trainer.train_expert(model_dir, DOMAINS[0], EXPERT, str(texts[DOMAINS[0]]), general=str(texts["general"]),
                             threads=2)
