"""Device profiles, the memory planner, budget enforcement and `edgemode bench`."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgemode import EdgemodeError
from edgemode.bundle import manifest as bundle_manifest
from edgemode.cli import cli
from edgemode.devices import cpu, planner, profiles
from edgemode.export import export
from edgemode.kv import KV_TYPES
from edgemode.layout import Layout
from edgemode.runtime import Engine

from conftest import DOMAINS


@pytest.mark.parametrize("name", profiles.names())
def test_every_profile_is_complete_and_sourced(name):
    profile = profiles.load(name)
    assert 0 < profile["budget_bytes"] < profile["ram_bytes"]
    assert profile["sources"] and profile["execution_providers"][-1] == "CPUExecutionProvider"


def test_int4_compute_path_follows_the_cpus_features():
    assert cpu.int4_compute("arm64", ["asimddp", "i8mm"]) == "int8"
    assert cpu.int4_compute("arm64", ["sve"]) == "fp32"  # Cortex-A72/A53: no dot product
    assert cpu.int4_compute("x86_64", ["avx2"]) == "int8" and cpu.int4_compute("x86_64", []) == "fp32"
    assert cpu.arch_name("aarch64") == "arm64" and cpu.arch_name("AMD64") == "x86_64"
    here = cpu.this_machine()
    assert here["arch"] in cpu.KERNEL_FEATURES and set(here["cpu_features"]) <= set(cpu.KERNEL_FEATURES[here["arch"]])


def test_plan_warns_where_int4_would_fall_back_to_fp32():
    runner = CliRunner()
    board = runner.invoke(cli, ["plan", "--device", "arm64-2gb", "--shape", "smollm2-135m", "--domains", "", "--json"])
    assert board.exit_code == 0 and "lacks asimddp" in board.stderr and json.loads(board.stdout)["int4_compute"] == "fp32"
    pi = runner.invoke(cli, ["plan", "--device", "rpi5-4gb", "--shape", "smollm2-135m", "--domains", "", "--json"])
    assert pi.exit_code == 0 and pi.stderr == "" and json.loads(pi.stdout)["int4_compute"] == "int8"


def test_the_engine_runs_on_the_profiles_first_available_provider(tmp_path, bundles, monkeypatch):
    import onnxruntime as ort

    from edgemode.runtime import engine as runtime_engine

    xnnpack, cpu_ep = "XnnpackExecutionProvider", "CPUExecutionProvider"
    phone = profiles.load("galaxy-s24") | {"budget_bytes": 1 << 34}
    assert phone["execution_providers"] == ["QNNExecutionProvider", xnnpack, cpu_ep]
    for available, expected in (([xnnpack, cpu_ep], [xnnpack, cpu_ep]), (["AzureExecutionProvider", cpu_ep], [cpu_ep]),
                                (["QNNExecutionProvider", xnnpack, cpu_ep], ["QNNExecutionProvider", cpu_ep])):
        monkeypatch.setattr(ort, "get_available_providers", lambda available=available: available)
        assert runtime_engine.execution_providers(phone) == expected
    assert runtime_engine.execution_providers(None) == [cpu_ep]
    # The engine makes its sessions with those providers (run here on the CPU's: this build may lack Xnnpack).
    monkeypatch.setattr(ort, "get_available_providers", lambda: [xnnpack, cpu_ep])
    asked, make_session = [], ort.InferenceSession
    monkeypatch.setattr(ort, "InferenceSession", lambda graph, options, providers: asked.append(providers)
                        or make_session(graph, options, providers=[cpu_ep]))
    path = tmp_path / "phone.json"
    path.write_text(json.dumps(phone))
    engine = Engine.load(bundles["int4"], ["a"], device=str(path))
    engine.set_domains(["b"])
    assert asked == [[xnnpack, cpu_ep]] * 2 and engine.execution_provider == cpu_ep


# Each target the product names, the architecture it is, and the default model (SmolLM2-135M with two
# experts, int4) fitting its budget at its whole 8k window with an int8 KV cache, and at 2k at least with fp32.
TARGETS = {"pixel8pro": "arm64", "pixel8": "arm64", "galaxy-s24": "arm64", "rpi5-4gb": "arm64", "rpi5-8gb": "arm64",
           "jetson-orin-nano-8gb": "arm64", "arm64-2gb": "arm64", "dev-x86": "x86_64"}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_each_target_runs_the_default_model(name):
    profile = profiles.load(name)
    assert profile["arch"] == TARGETS[name] and profile["quantization"]["weights"] == "int4"
    shape = planner.SHAPES["smollm2-135m"]
    longest = {kv: planner.longest_context(shape, Layout.split(shape.num_layers, 3, 2), 2, profile["quantization"],
                                           KV_TYPES[kv], profile["budget_bytes"], 8192) for kv in ("fp32", "int8")}
    assert longest["int8"] == 8192 and longest["fp32"] >= 2048, longest


def test_bad_profiles_are_clear_errors(tmp_path):
    with pytest.raises(EdgemodeError, match="unknown device"):
        profiles.load("toaster")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "budget_bytes": "lots"}))
    with pytest.raises(EdgemodeError, match="budget_bytes"):
        profiles.load(str(bad))
    for change, message in (({"threads": 8}, "threads at most cores"), ({"arch": "riscv64"}, "arch must be one of"),
                            ({"cpu_features": [1]}, "lists of names")):
        bad.write_text(json.dumps(profiles.load("rpi5-4gb") | change))
        with pytest.raises(EdgemodeError, match=message):
            profiles.load(str(bad))


def test_plan_counts_expert_layers_in_the_kv_cache_and_weights():
    shape = planner.SHAPES["smollm2-135m"]
    layout = Layout.split(shape.num_layers, 3, 2)
    int4 = {"weights": "int4", "block_size": 32}
    none, two = (planner.plan(shape, layout, d, int4, 1024) for d in (0, 2))
    per_layer_kv = none["kv_bytes"] / shape.num_layers
    assert two["kv_bytes"] == pytest.approx(per_layer_kv * (shape.num_layers + 2 * 3 * 2))
    assert two["components"]["experts"] > 0 == none["components"]["experts"]
    fp32 = planner.plan(shape, layout, 0, {"weights": "fp32"}, 1024)
    # int4 in memory, per weight: 4 bits + per block of 32 an fp32 scale and a 4-bit zero point, plus
    # one row of corrections per 32 rows, times onnxruntime's prepacking (1.5, measured)
    ratio = none["components"]["backbone"] / fp32["components"]["backbone"]
    assert ratio == pytest.approx((0.5 + 4 / 32 + 0.5 / 32) * (1 + 1 / 32) * planner.INT4_PREPACK_FACTOR / 4, rel=0.01)


def test_nano_shapes_plan_without_weights():
    for name, params in (("nano-1", 1.8e9), ("nano-2", 3.25e9)):
        shape = planner.SHAPES[name]
        total = shape.num_layers * planner.layer_params(shape) + shape.vocab_size * shape.hidden_size
        assert abs(total / params - 1) < 0.05
        assert planner.plan(shape, Layout.split(shape.num_layers, 3, 2), 2, {"weights": "fp32"}, 2048, 1 << 30)["fits"] is False


def budget_profile(tmp_path, bundle, domains_that_fit):
    """A profile whose budget holds `domains_that_fit` experts of `bundle` at a context of 16 tokens
    or more, and one more expert at no context at all."""
    manifest = bundle_manifest.read(bundle)
    need = lambda d, context: planner.plan(manifest.backbone, manifest.layout, d, manifest.quantization,  # noqa: E731
                                           context, window=manifest.max_context)["total_bytes"]
    budget = need(domains_that_fit + 1, 2) - 1
    assert need(domains_that_fit, 16) <= budget
    profile = profiles.load("dev-x86") | {"budget_bytes": budget}
    path = tmp_path / "tight.json"
    path.write_text(json.dumps(profile))
    return str(path)


def test_engine_refuses_over_budget_and_keeps_its_state(tmp_path, bundles):
    device = budget_profile(tmp_path, bundles["int4"], 1)
    with pytest.raises(EdgemodeError, match="budget"):
        Engine.load(bundles["int4"], DOMAINS, device=device)
    engine = Engine.load(bundles["int4"], ["a"], device=device)
    with pytest.raises(EdgemodeError, match="budget"):
        engine.set_domains(DOMAINS)
    assert engine.domains == ["a"] and engine.decoder.domains == ["a"]
    request = engine.new_cache(16)  # holds {a}'s session through a switch
    with pytest.raises(EdgemodeError, match="a request still runs on {a}"):
        engine.set_domains(["b"])
    assert engine.domains == ["a"] and engine.decoder is request.decoder
    del request
    engine.set_domains(["b"])  # the same count fits once nothing holds the previous session


def test_export_refuses_what_cannot_fit_and_writes_nothing(tmp_path, model_dir, bundles):
    device = budget_profile(tmp_path, bundles["int4"], 0)
    with pytest.raises(EdgemodeError, match="nothing was written"):
        export(model_dir, tmp_path / "out", quant="int4", max_context=128, device=device)
    assert not (tmp_path / "out").exists()
    export(model_dir, tmp_path / "out", domains=[], quant="int4", max_context=128, device=device)
    assert bundle_manifest.read(tmp_path / "out").domains == ()


def test_plan_and_bench_cli(bundles):
    runner = CliRunner()
    result = runner.invoke(cli, ["plan", "--device", "pixel8", "--shape", "nano-2", "--domains", "a,b", "--json"])
    planned = json.loads(result.stdout)
    assert result.exit_code == 0 and planned["fits"] is False and planned["total_bytes"] > planned["budget_bytes"]
    result = runner.invoke(cli, ["plan", "--device", "dev-x86", str(bundles["int4"]), "--domains", "a", "--json"])
    planned = json.loads(result.stdout)
    assert result.exit_code == 0 and planned["fits"] is True
    assert planned["context"] == bundle_manifest.read(bundles["int4"]).max_context  # not the device's 2048
    result = runner.invoke(cli, ["bench", str(bundles["int4"]), "--domains", "a", "--prompt-tokens", "16",
                                 "--new-tokens", "8", "--repeat", "2", "--json"])
    measured = json.loads(result.stdout)
    assert {"load_s", "ttft_ms", "decode_tok_s", "p95_token_ms", "peak_rss_mb", "graph_bytes"} <= set(measured)
    assert measured["decode_tok_s"] > 0 and measured["graph_bytes"] > 0
    assert measured["prefill_chunk"] == planner.PREFILL_CHUNK
    assert list(measured["switch_s"]) == ["a", "a,b"] and all(s > 0 for s in measured["switch_s"].values())
    assert measured["switch_peak_rss_mb"] >= measured["peak_rss_mb"]
    assert measured["quantization"]["accuracy_level"] == 4 and measured["execution_provider"] == "CPUExecutionProvider"
    assert measured["machine"]["int4_compute"] in ("int8", "fp32") and "cpu_features" in measured["machine"]
    result = runner.invoke(cli, ["bench", str(bundles["int4"]), "--prompt-tokens", "16", "--new-tokens", "2",
                                 "--repeat", "1", "--prefill-chunk", "5", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["prefill_chunk"] == 5
    assert measured["graph_bytes"] < json.loads(result.stdout)["graph_bytes"]  # {a} loads less than {a,b}
    result = runner.invoke(cli, ["bench", str(bundles["int4"]), "--domains", "b,a", "--prompt-tokens", "4", "--new-tokens", "2",
                                 "--repeat", "1", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["domains"] == ["a", "b"]  # the bundle's order, as asked or not
    result = runner.invoke(cli, ["bench", str(bundles["int4"]), "--prompt-tokens", "16", "--prefill-chunk", "0"])
    assert result.exit_code == 1 and "prefill_chunk must be an integer >= 1" in result.stderr


def test_plan_of_a_model_directory_equals_plan_of_its_bundle(tmp_path, model_dir, bundles):
    from edgemode.opener import Bundle, ModelDir, open_path

    plans = {}
    export(model_dir, tmp_path / "bundle", quant="fp32")  # the default context: the backbone's window, as planned
    for path in (model_dir, tmp_path / "bundle"):
        result = CliRunner().invoke(cli, ["plan", "--device", "dev-x86", str(path), "--domains", "a,b", "--quant", "fp32",
                                          "--context", "64", "--json"])
        assert result.exit_code == 0, result.output
        plans[path] = json.loads(result.stdout)
    model, bundle = plans.values()
    assert model == bundle and model["total_bytes"] > 0 and model["shape"]["num_layers"] > 0
    assert isinstance(open_path(model_dir), ModelDir) and isinstance(open_path(bundles["fp32"]), Bundle)
    assert open_path(model_dir).can_concept_gradients and not open_path(model_dir).can_trace
    assert open_path(bundles["fp32"]).can_trace and not open_path(bundles["fp32"]).has_evidence


def test_bench_peak_rss_is_its_own_not_its_parents():
    # getrusage's ru_maxrss survives fork and exec: a child of a large process would report the parent.
    ballast = np.ones(400 * 2**20, np.uint8)  # 400 MiB resident in this (parent) process
    child = subprocess.run([sys.executable, "-c", "from edgemode.runtime.bench import peak_rss_mb; print(peak_rss_mb())"],
                           capture_output=True, text=True, check=True)
    assert float(child.stdout) < 300
    del ballast
