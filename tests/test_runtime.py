"""The runtime: domain switching, generation, sampling, its errors, and its slim imports."""

import os
import subprocess
import sys
import textwrap
import weakref

import numpy as np
import pytest

from edgemode import EdgemodeError
from edgemode.runtime import Engine, Sampling
from edgemode.runtime.sampling import choose

from conftest import DOMAINS


def greedy(engine, n=12):
    return list(engine.generate_ids([3, 5, 7, 9], max_new_tokens=n))


def test_set_domains_equals_a_fresh_engine(bundles):
    engine = Engine.load(bundles["fp32"], ["a"])
    for domains in (["b"], DOMAINS, [], ["b", "a"], ["a"]):
        engine.set_domains(domains)
        assert engine.domains == [d for d in DOMAINS if d in domains]  # the bundle's order, as asked or not
        fresh = Engine.load(bundles["fp32"], domains)
        ids = np.arange(10) * 7 % 300
        np.testing.assert_allclose(engine.logits(ids), fresh.logits(ids), rtol=0, atol=1e-5)
        assert greedy(engine) == greedy(fresh)


def test_one_session_runs_exactly_the_active_layers(bundles):
    engine = Engine.load(bundles["fp32"], [])
    manifest = engine.manifest
    layers, blocks = manifest.backbone.num_layers, len(manifest.layout.blocks)
    expert_layers = len(manifest.layout.expert_sources[0])
    size_none = engine.loaded_graph_bytes
    for domains in ([], ["a"], DOMAINS):
        engine.set_domains(domains)
        inputs = [i.name for i in engine.decoder.session.get_inputs()]
        assert sum(n.startswith("past_key_values.") for n in inputs) == 2 * (layers + len(domains) * blocks * expert_layers)
    assert size_none < engine.loaded_graph_bytes


def test_a_switch_frees_the_previous_session_unless_a_request_holds_it(bundles):
    engine = Engine.load(bundles["fp32"], ["a"])
    unused = weakref.ref(engine.decoder)
    engine.set_domains(["b"])
    assert unused() is None
    request = engine.new_cache(16)
    engine.set_domains(DOMAINS)
    assert request.decoder.domains == ["b"] and engine.decoder.domains == DOMAINS
    engine.forward(np.array([1, 2, 3]), request)  # the request runs on with the set it started with


def test_failed_set_domains_changes_nothing(bundles, monkeypatch):
    from edgemode.runtime import engine as engine_module

    engine = Engine.load(bundles["fp32"], ["a"])
    expected, before = greedy(engine), engine.decoder
    for bad in (["zz"], ["a", "a"], "a"):
        with pytest.raises(EdgemodeError):
            engine.set_domains(bad)
        assert engine.domains == ["a"] and engine.decoder is before

    def refuse(self, graph, manifest, domains, options, providers, kv):
        raise EdgemodeError("no session today")

    original = engine_module.Decoder.__init__
    monkeypatch.setattr(engine_module.Decoder, "__init__", lambda self, *a: (refuse if a[2] == ["b"] else original)(self, *a))
    with pytest.raises(EdgemodeError, match="no session today"):
        engine.set_domains(["b"])  # after the previous session was released: the engine makes it again
    assert engine.domains == ["a"] and greedy(engine) == expected


def test_a_closed_engine_says_so(bundles):
    with Engine.load(bundles["fp32"], ["a"]) as engine:
        greedy(engine)
    assert engine.embedding._file.closed
    for use in (lambda: greedy(engine), lambda: engine.set_domains([])):
        with pytest.raises(EdgemodeError, match="closed"):
            use()


def test_generate_streams_text_and_stops_at_max_tokens(bundles):
    engine = Engine.load(bundles["fp32"], DOMAINS)
    ids = list(engine.generate_ids([1, 2, 3], max_new_tokens=5))
    assert 1 <= len(ids) <= 5
    pieces = list(engine.generate("w1 w2 w3", max_new_tokens=5))
    assert all(isinstance(p, str) for p in pieces)


def test_sampling_is_deterministic_for_a_seed(bundles):
    engine = Engine.load(bundles["fp32"], ["a"])
    run = lambda seed: list(engine.generate_ids([4, 5], 20, Sampling(temperature=1.5, top_k=50, top_p=0.95, seed=seed)))
    assert run(7) == run(7)
    assert run(7) != run(8) or run(7) != run(9)


def test_choose_respects_top_k_and_top_p():
    logits = np.array([5.0, 4.0, 0.0, -1.0])
    rng = np.random.default_rng(0)
    assert {choose(logits, Sampling(temperature=1.0, top_k=2), rng) for _ in range(200)} <= {0, 1}
    assert {choose(logits, Sampling(temperature=1.0, top_p=0.5), rng) for _ in range(200)} == {0}
    assert choose(logits, Sampling(), rng) == 0


@pytest.mark.parametrize("kwargs", [dict(temperature=-1), dict(temperature=float("nan")), dict(top_k=-2),
                                    dict(top_p=0), dict(top_p=1.5)])
def test_invalid_sampling_is_refused(kwargs):
    with pytest.raises(EdgemodeError):
        Sampling(**kwargs)


def test_prompt_errors(bundles):
    engine = Engine.load(bundles["fp32"], [])
    with pytest.raises(EdgemodeError, match="prompt is empty"):
        list(engine.generate(""))
    with pytest.raises(EdgemodeError, match="beyond this bundle.s context of 128 tokens"):
        list(engine.generate_ids(list(range(128)), 4))
    with pytest.raises(EdgemodeError, match="max_new_tokens"):
        list(engine.generate_ids([1, 2], 0))
    with pytest.raises(EdgemodeError, match="must be text"):
        list(engine.generate(b"w1"))


def test_generation_stops_when_the_context_is_full(bundles):
    engine = Engine.load(bundles["fp32"], [])
    # 128 positions fit in the cache; the token predicted at the last one is still returned.
    assert len(list(engine.generate_ids(list(range(120)), 50))) == 128 - 120 + 1


BLOCK_HEAVY_IMPORTS = textwrap.dedent("""
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "transformers", "optimum", "safetensors"}:
                raise ImportError("blocked: " + name)
    sys.meta_path.insert(0, Block())
""")


def test_runtime_generates_without_torch_or_transformers(bundles):
    code = BLOCK_HEAVY_IMPORTS + textwrap.dedent(f"""
        from edgemode.runtime import Engine
        engine = Engine.load({str(bundles['int4'])!r}, ["a"])
        ids = list(engine.generate_ids([1, 2, 3], max_new_tokens=4))
        assert len(ids) >= 1, ids
        assert "onnx" not in sys.modules, "composing imported all of onnx, not just its protobuf classes"
        try:
            import torch
        except ImportError:
            print("ok, torch blocked")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ok, torch blocked" in done.stdout


def test_cli_run_and_inspect_without_torch(bundles):
    code = BLOCK_HEAVY_IMPORTS + textwrap.dedent(f"""
        sys.argv = ["edgemode", "run", {str(bundles['int4'])!r}, "--domains", "a,b", "--prompt", "w1 w2",
                    "--max-new-tokens", "3"]
        from edgemode.cli import main
        main()
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_eight_threads_on_one_engine_are_serialized_and_correct(bundles):
    import threading

    engine = Engine.load(bundles["fp32"], DOMAINS)
    expected = greedy(engine)
    results, errors = [None] * 8, []

    def work(i):
        try:
            results[i] = greedy(engine)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [expected] * 8


def test_export_verbs_without_torch_say_what_to_install(model_dir, tmp_path):
    code = BLOCK_HEAVY_IMPORTS + textwrap.dedent(f"""
        sys.argv = ["edgemode", "export", {str(model_dir)!r}, "-o", {str(tmp_path / "b")!r}]
        from edgemode.cli import main
        main()
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "pip install 'edgemode[export]'" in done.stderr
    assert "Traceback" not in done.stderr


def mapped_bytes(data_file) -> int:
    """Bytes of this process's address space that map `data_file`, from /proc/self/maps."""
    total = 0
    for line in open("/proc/self/maps"):
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].strip() == str(data_file.resolve()):
            start, end = (int(a, 16) for a in fields[0].split("-"))
            total += end - start
    return total


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/maps")
def test_the_embedding_table_stays_on_disk(bundles):
    # Rows are read as needed: the table is never mapped, so it adds nothing to resident memory.
    engine = Engine.load(bundles["fp32"], DOMAINS)
    greedy(engine)
    assert mapped_bytes(bundles["fp32"] / "embedding.onnx.data") == 0
    assert mapped_bytes(bundles["fp32"] / "backbone.block0.onnx.data") > 0  # the check itself sees mappings
    del engine


@pytest.mark.parametrize("precision", ["fp32", "int4", "int4 vocab_bits=4", "int4 vocab_bits=4 symmetric"])
def test_embedding_rows_equal_onnxruntimes_gather(bundles, tmp_path, model_dir, precision):
    import onnxruntime as ort

    from edgemode.export import export
    from edgemode.quantize import Int4Config

    bundle = bundles.get(precision)
    if bundle is None:
        bundle = tmp_path / "bundle"
        config = Int4Config(vocab_bits=4, symmetric="symmetric" in precision)
        export(model_dir, bundle, quant="int4", max_context=64, int4=config, check=False)
    engine = Engine.load(bundle, [])
    ids = np.array([0, 1, 2, 7, 150, 298, 299, 7])
    gather = ort.InferenceSession(str(bundle / "embedding.onnx"), providers=["CPUExecutionProvider"])
    want = gather.run(None, {"input_ids": ids[None]})[0]
    got = engine.embedding(ids)
    assert got.shape == want.shape and np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
