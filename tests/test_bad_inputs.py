"""Bad inputs found by the outside check (issue 6): each is a clear EdgemodeError and changes nothing."""

import json
import os
import shutil
import threading
from dataclasses import asdict

import numpy as np
import pytest

from edgemode import EdgemodeError, read_json
from edgemode.bundle import manifest as bundle_manifest
from edgemode.bundle.manifest import BundleError
from edgemode.devices import planner
from edgemode.layout import Layout
from edgemode.export import export
from edgemode.quantize import Int4Config
from edgemode.runtime import Engine
from edgemode.runtime.sampling import Sampling

from conftest import DOMAINS


def greedy(engine, n=6):
    return list(engine.generate_ids([1, 2, 3], n))


def test_switching_domains_mid_generation_keeps_that_generation_whole(bundles):
    engine = Engine.load(bundles["fp32"], ["a"])
    expected = greedy(engine)
    paused = engine.generate_ids([1, 2, 3], 6)
    first = next(paused)
    switch = threading.Thread(target=engine.set_domains, args=([],))
    switch.start()
    switch.join(timeout=30)
    assert not switch.is_alive(), "set_domains waited for an unfinished generation"
    assert engine.domains == []
    assert [first, *paused] == expected
    assert greedy(engine) == greedy(Engine.load(bundles["fp32"], []))


def test_prompt_and_token_id_errors(bundles):
    engine = Engine.load(bundles["fp32"], [])
    vocab = engine.manifest.backbone.vocab_size
    with pytest.raises(EdgemodeError, match="not valid UTF-8"):
        engine.encode("w1 \udcff")  # what Python makes of undecodable bytes in argv
    for ids in ([-1], [vocab], ["w1"], [1.5]):
        with pytest.raises(EdgemodeError, match="token ids"):
            list(engine.generate_ids(ids, 2))
    for bad in ("5", 2.5, float("nan"), True):
        with pytest.raises(EdgemodeError, match="max_new_tokens"):
            list(engine.generate_ids([1], bad))
        with pytest.raises(EdgemodeError, match="prefill_chunk"):
            list(engine.generate_ids([1], 2, prefill_chunk=bad))
    with pytest.raises(EdgemodeError, match="prefill_chunk"):
        list(engine.generate_ids([1], 2, prefill_chunk=0))
    with pytest.raises(EdgemodeError, match="token ids"):
        engine.logits([])
    with pytest.raises(EdgemodeError, match="chunk must be an integer"):
        engine.logits([1, 2], chunk=0)
    for capacity in (0, 2.5, "8"):
        with pytest.raises(EdgemodeError, match="capacity must be an integer"):
            engine.new_cache(capacity)
    cache = engine.new_cache(8)
    for ids in ([vocab], [-3], [[1]]):
        with pytest.raises(EdgemodeError, match="token ids"):
            engine.forward(ids, cache)
    with pytest.raises(EdgemodeError, match="new_cache"):
        engine.forward([1], object())
    assert cache.length == 0  # refused steps leave the request as it was


@pytest.mark.parametrize("threads", [0, -1, 3_000_000_000, "2"])
def test_thread_counts_outside_1_to_256_are_refused(bundles, threads):
    with pytest.raises(EdgemodeError, match="threads must be"):
        Engine.load(bundles["fp32"], [], threads=threads)


def test_sampling_seed_and_tiny_temperature():
    with pytest.raises(EdgemodeError, match="seed"):
        Sampling(seed=-1)
    from edgemode.runtime.sampling import choose

    logits = np.array([0.0, 3.0, 1.0], np.float32)
    assert choose(logits, Sampling(temperature=1e-320, seed=0), np.random.default_rng(0)) == 1


def test_graph_in_the_wrong_role_is_refused(tmp_path, bundles):
    bundle = tmp_path / "b"
    shutil.copytree(bundles["fp32"], bundle)
    path = bundle / bundle_manifest.MANIFEST
    manifest = json.loads(path.read_text())
    manifest["graphs"]["head"] = "embedding.onnx"
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="embedding.onnx is not the graph"):
        Engine.load(bundle, [])


def test_corrupt_tokenizer_of_the_same_size_is_refused(tmp_path, bundles):
    bundle = tmp_path / "b"
    shutil.copytree(bundles["fp32"], bundle)
    tokenizer = bundle / "tokenizer.json"
    tokenizer.write_bytes(b"x" * tokenizer.stat().st_size)
    with pytest.raises(BundleError, match="not a readable tokenizer"):
        Engine.load(bundle, [])


def test_plan_suggestions_never_go_below_two_tokens():
    shape = planner.SHAPES["nano-2"]
    for context in (3, 1000, 10**15):
        result = planner.plan(shape, Layout.split(shape.num_layers, 3, 2), 2, {"weights": "fp32"}, context, budget_bytes=100 * 2**20)
        assert result["fits"] is False and result["suggestions"]


@pytest.mark.parametrize("change", [dict(intermediate_size=-10**9), dict(head_dim=0), dict(vocab_size=2.5),
                                    dict(num_layers=True), dict(tied_embeddings="yes")])
def test_nonsense_shapes_are_refused(change):
    import dataclasses

    with pytest.raises(EdgemodeError, match="positive integers|tied_embeddings"):
        dataclasses.replace(planner.SHAPES["smollm2-135m"], **change)


@pytest.mark.parametrize("blocks, expert_layers", [(0, 2), (1000, 2), (3, -2)])
def test_nonsense_layouts_are_refused(blocks, expert_layers):
    with pytest.raises(EdgemodeError, match="--blocks must be between 1 and the backbone's 30 layers|--expert-layers"):
        Layout.split(planner.SHAPES["smollm2-135m"].num_layers, blocks, expert_layers)


@pytest.mark.parametrize("config", [dict(block_size=0), dict(block_size=-32), dict(block_size=48), dict(accuracy_level=99)])
def test_bad_int4_settings_are_refused(config):
    with pytest.raises(EdgemodeError):
        Int4Config(**config)


def test_export_context_zero_is_refused_and_writes_nothing(tmp_path, model_dir):
    with pytest.raises(EdgemodeError, match="--context"):
        export(model_dir, tmp_path / "out", quant="fp32", max_context=0)
    assert not (tmp_path / "out").exists()


def test_export_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path, model_dir, bundles):
    real, link = tmp_path / "real", tmp_path / "link"
    shutil.copytree(bundles["int4"], real)
    link.symlink_to(real)
    export(model_dir, link, domains=["b"], quant="fp32", max_context=64)
    assert link.is_symlink() and os.path.samefile(link, real)
    assert bundle_manifest.read(real).domains == ("b",)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_absurd_json_is_an_error_not_a_crash(tmp_path):
    for text in ("[" * 50_000, "1" * 5000):
        path = tmp_path / "x.json"
        path.write_text(text)
        with pytest.raises(EdgemodeError, match="not valid JSON"):
            read_json(path)


def test_overlong_domain_name_is_refused_before_anything_is_written(tmp_path, backbone_dir):
    from edgemode.model import create

    with pytest.raises(EdgemodeError, match="invalid domain name"):
        create(tmp_path / "m", str(backbone_dir), ["d" * 250], blocks=1, expert_layers=1)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("change", [dict(threads=2**40), dict(quantization={})])
def test_profile_with_absurd_threads_or_no_quantization_is_refused(tmp_path, change):
    from edgemode.devices import profiles

    profile = {**json.loads((profiles.FOLDER / "dev-x86.json").read_text()), **change}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(profile))
    with pytest.raises(EdgemodeError, match="device profile"):
        profiles.load(str(path))


def test_manifest_without_model_type_and_domains_not_a_list_are_refused(tmp_path, bundles):
    bundle = tmp_path / "b"
    shutil.copytree(bundles["fp32"], bundle)
    for domains in ("a", 3, {"a": 1}):
        with pytest.raises(EdgemodeError, match="domains must be a list"):
            Engine.load(bundle, domains)
    assert Engine.load(bundle, None).domains == DOMAINS  # None: every domain, as the CLI's default
    path = bundle / bundle_manifest.MANIFEST
    manifest = json.loads(path.read_text())
    del manifest["backbone"]["model_type"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="backbone shape"):
        Engine.load(bundle, [])


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["embedding_table"].update(file=["embedding.onnx.data"]), "embedding_table.file"),
    (lambda m: m["backbone"].pop("kv_head_dim"), "backbone shape"),
    (lambda m: m["backbone"].update(kv_head_dim=m["backbone"]["head_dim"] + 16), r"backbone shape \(kv_head_dim\)"),
    (lambda m: m["backbone"].update(num_heads="4"), "backbone shape"),
    (lambda m: m["backbone"].update(tied_embeddings=None), "backbone shape"),
    (lambda m: m["layout"].update(blocks=m["layout"]["blocks"][::-1]), "split the backbone's layers in order"),
    (lambda m: m["layout"]["expert_sources"][0].pop(), "the same expert layers per block"),
], ids=["table file a list", "no kv_head_dim", "kv_head_dim not head_dim padded", "heads a string", "tied not a bool",
        "blocks out of order", "uneven expert layers"])
def test_manifest_edits_the_composer_would_trip_on_are_refused(tmp_path, bundles, edit, message):
    # found by scripts/fuzz_bundle.py: each crashed (TypeError, KeyError) instead of a clear error
    bundle = tmp_path / "b"
    shutil.copytree(bundles["fp32"], bundle)
    path = bundle / bundle_manifest.MANIFEST
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        Engine.load(bundle, DOMAINS)


def test_a_graph_pointing_outside_the_bundles_files_is_refused(tmp_path, bundles):
    import onnx

    bundle = tmp_path / "b"
    shutil.copytree(bundles["fp32"], bundle)
    graph = onnx.load(str(bundle / "backbone.block0.onnx"), load_external_data=False)
    for entry in graph.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../../etc/passwd"
    onnx.save(graph, str(bundle / "backbone.block0.onnx"))
    path = bundle / bundle_manifest.MANIFEST
    manifest = json.loads(path.read_text())  # a consistent manifest: sizes and sha256 match the edit
    manifest["files"].update({n: asdict(e) for n, e in bundle_manifest.describe_files(bundle, ["backbone.block0.onnx"]).items()})
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="not a file of this bundle"):
        Engine.load(bundle, [], verify=True)


def test_corrupt_training_progress_is_a_clear_error(tmp_path):
    from edgemode.train.trainer import Checkpoint, Schedule

    checkpoint = Checkpoint(tmp_path, "legal", Schedule(steps=1))
    checkpoint.progress.parent.mkdir(parents=True)
    checkpoint.progress.write_text("{'step': 3")
    with pytest.raises(EdgemodeError, match="not valid JSON"):
        checkpoint.read()


def test_graphs_failing_at_run_time_are_a_clear_error(tmp_path, bundles):
    bundle = tmp_path / "b"
    shutil.copytree(bundles["fp32"], bundle)
    path = bundle / bundle_manifest.MANIFEST
    manifest = json.loads(path.read_text())
    context = manifest["max_context"]
    manifest["max_context"] = 2 * context  # a manifest edited by hand: the graphs' rotary caches still end at `context`
    path.write_text(json.dumps(manifest))
    engine = Engine.load(bundle, [])
    with pytest.raises(BundleError, match="do not match its manifest"):
        list(engine.generate_ids(list(range(1, context + 10)), 2))


def test_an_embedding_table_past_its_file_is_refused_at_load(tmp_path, bundles):
    bundle = tmp_path / "b"
    shutil.copytree(bundles["fp32"], bundle)
    path = bundle / bundle_manifest.MANIFEST
    manifest = json.loads(path.read_text())
    manifest["backbone"]["vocab_size"] += 100  # a manifest edited by hand: the table still has the old rows
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="embedding_table reaches past the end of its file"):
        Engine.load(bundle, [])


def test_wrong_argument_types_are_edgemode_errors(tmp_path, model_dir):
    with pytest.raises(EdgemodeError, match="top_k"):
        Sampling(top_k="3")
    with pytest.raises(EdgemodeError, match="--context must be an integer"):
        export(model_dir, tmp_path / "out", quant="fp32", max_context="64")
    assert not (tmp_path / "out").exists()
