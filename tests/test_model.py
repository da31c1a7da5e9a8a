"""The PyTorch MoDE model: backbone equivalence, subset semantics, and its directory format."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from edgemode import EdgemodeError
from edgemode.model import store

from conftest import DOMAINS, make_backbone


def ids(n=12, vocab=300, seed=0):
    return torch.randint(0, vocab, (2, n), generator=torch.Generator().manual_seed(seed))


def test_no_domains_is_exactly_the_backbone(reference, backbone_dir):
    hf = AutoModelForCausalLM.from_pretrained(backbone_dir, dtype=torch.float32).eval()
    x = ids()
    with torch.no_grad():
        assert (reference(x, domains=[]) - hf(x).logits).abs().max() <= 1e-5


@pytest.mark.parametrize("init", ["copy", "random"])
def test_untrained_experts_are_the_identity(tmp_path, backbone_dir, init):
    mode = store.create(tmp_path / "m", str(backbone_dir), DOMAINS, blocks=2, expert_layers=2, init=init, seed=0)
    x = ids()
    with torch.no_grad():
        backbone = mode(x, domains=[])
        for domains in (["a"], ["b"], ["a", "b"]):
            assert torch.equal(mode(x, domains=domains), backbone)
        assert (mode.experts["a"][0][0].self_attn.q_proj.weight != 0).any()  # only the output projections are zero


def test_subset_equals_full_model_with_other_gate_at_minus_inf(reference):
    x = ids()
    with torch.no_grad():
        subset = reference(x, domains=["a"])
        saved = [g.bias.clone() for g in reference.gates]
        try:
            for gate in reference.gates:
                gate.bias[1 + DOMAINS.index("b")] = float("-inf")
            full = reference(x, domains=DOMAINS)
        finally:
            for gate, bias in zip(reference.gates, saved):
                gate.bias.copy_(bias)
        assert (subset - full).abs().max() <= 1e-6
        # The experts really contribute: the subset is not the backbone.
        assert (subset - reference(x, domains=[])).abs().max() > 1e-3


def test_domain_order_does_not_matter(reference):
    x = ids()
    with torch.no_grad():
        assert (reference(x, domains=["a", "b"]) - reference(x, domains=["b", "a"])).abs().max() <= 1e-5


def test_save_and_load_round_trip(reference, model_dir):
    again = store.load(model_dir)
    x = ids()
    with torch.no_grad():
        assert torch.equal(reference(x), again(x))


@pytest.mark.parametrize("domains", [["c"], ["a", "a"]])
def test_bad_domains_are_refused(reference, domains):
    with pytest.raises(EdgemodeError, match="unknown domain|duplicate"):
        reference(ids(), domains=domains)


def test_expert_from_another_backbone_is_refused(tmp_path, model_dir, reference):
    other = tmp_path / "other"
    make_backbone("llama", other)
    with torch.no_grad():  # same shapes, different weights: only the fingerprint tells them apart
        model = AutoModelForCausalLM.from_pretrained(other)
        model.model.norm.weight.add_(1.0)
        model.save_pretrained(other)
    foreign = tmp_path / "foreign"
    store.create(foreign, str(other), ["a"], blocks=len(reference.layout.blocks), expert_layers=2)
    target = tmp_path / "target"
    _copy_model(model_dir, target)
    (target / "experts" / "a.safetensors").write_bytes((foreign / "experts" / "a.safetensors").read_bytes())
    with pytest.raises(EdgemodeError, match="made for backbone"):
        store.load(target)


def test_corrupt_expert_file_is_a_clear_error(tmp_path, model_dir):
    target = tmp_path / "m"
    _copy_model(model_dir, target)
    path = target / "experts" / "b.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(EdgemodeError, match="not a readable safetensors"):
        store.load(target)


def test_expert_with_wrong_shapes_is_a_clear_error(tmp_path, model_dir):
    target = tmp_path / "m"
    _copy_model(model_dir, target)
    tensors, meta = _read_expert(target, "a")
    name = next(k for k in tensors if k.endswith("q_proj.weight"))
    tensors[name] = tensors[name][:-1]
    save_file(tensors, str(target / "experts" / "a.safetensors"), metadata=meta)
    with pytest.raises(EdgemodeError, match="does not match the backbone's layer shapes"):
        store.load(target)


def test_changed_backbone_is_detected(tmp_path, backbone_dir, model_dir):
    target = _copy_with_manifest(model_dir, tmp_path / "m", lambda m: m["backbone"].update(fingerprint="sha256:" + "0" * 64))
    with pytest.raises(EdgemodeError, match="is not the one"):
        store.load(target)


def test_model_directory_of_replacing_experts_asks_to_retrain(tmp_path, model_dir):
    target = _copy_with_manifest(model_dir, tmp_path / "m", lambda m: m.update(schema=1))
    with pytest.raises(EdgemodeError, match="replace a share of their block.*edgemode new.*re-train"):
        store.load(target)


def test_expert_file_of_replacing_experts_asks_to_retrain(tmp_path, model_dir):
    target = tmp_path / "m"
    _copy_model(model_dir, target)
    tensors, meta = _read_expert(target, "a")
    save_file(tensors, str(target / "experts" / "a.safetensors"), metadata={**meta, "schema": "1"})
    with pytest.raises(EdgemodeError, match="expert a.safetensors: schema 1 experts replace"):
        store.load(target)


@pytest.mark.parametrize("blocks,layers,message", [(0, 2, "--blocks"), (99, 2, "--blocks"), (2, 0, "--expert-layers")])
def test_bad_layouts_are_refused(tmp_path, backbone_dir, blocks, layers, message):
    with pytest.raises(EdgemodeError, match=message):
        store.create(tmp_path / "m", str(backbone_dir), ["a"], blocks, layers)


def _copy_model(src, dst):
    import shutil

    shutil.copytree(src, dst)


def _copy_with_manifest(src, dst, edit):
    """A copy of model directory `src` whose mode.json `edit(manifest)` changed in place."""
    _copy_model(src, dst)
    manifest = json.loads((dst / "mode.json").read_text())
    edit(manifest)
    (dst / "mode.json").write_text(json.dumps(manifest))
    return dst


def _read_expert(model_dir, domain):
    """An expert file's tensors and metadata, to write back altered."""
    from safetensors import safe_open

    path = model_dir / "experts" / f"{domain}.safetensors"
    with safe_open(str(path), "pt") as f:
        return load_file(str(path)), f.metadata()
