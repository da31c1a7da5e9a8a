"""`edgemode explain`: exact Shapley values and Faith-Shap interactions over experts, and gate traces."""

import json
import re
import subprocess
import sys
import textwrap
from html import escape
from itertools import combinations, permutations
from math import comb

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgemode import EdgemodeError
from edgemode.cli import cli
from edgemode.explain import games
from edgemode.explain.attribution import explain
from edgemode.explain.page import render
from edgemode.export import export
from edgemode.model import store
from edgemode.runtime import Engine

from conftest import DOMAINS, make_backbone, randomize_gates
from test_runtime import BLOCK_HEAVY_IMPORTS

PLAYERS = ["a", "b", "twin", "off"]  # twin: a's copy (same layers and gate rows); off: gate logit -1e9
WINDOW = 64


@pytest.fixture(scope="module")
def game_dirs(tmp_path_factory):
    """A llama MoDE model whose experts make Shapley's axioms testable, and its fp32 bundle."""
    root = tmp_path_factory.mktemp("explain")
    make_backbone("llama", root / "backbone")
    mode = store.create(root / "model", str(root / "backbone"), PLAYERS, blocks=3, expert_layers=2, init="random", seed=0)
    randomize_gates(mode)
    a, twin, off = (1 + PLAYERS.index(d) for d in ("a", "twin", "off"))
    with torch.no_grad():
        mode.experts["twin"].load_state_dict(mode.experts["a"].state_dict())
        for gate in mode.gates:
            gate.weight[twin], gate.bias[twin] = gate.weight[a], gate.bias[a]
            gate.weight[off], gate.bias[off] = 0.0, -1e9
    store.save(mode, root / "model")
    export(root / "model", root / "bundle", quant="fp32", max_context=128)
    return root / "model", root / "bundle"


TEXT = " ".join(f"w{(i * 37) % 290}" for i in range(100))  # 100 word tokens: two windows of 64


@pytest.fixture(scope="module")
def result(game_dirs):
    return explain(game_dirs[1], None, TEXT, order=2, window=WINDOW)


def test_shapley_is_efficient_symmetric_and_zero_for_a_dummy(result):
    phi, values = result["shapley"], result["values"]
    assert result["domains"] == PLAYERS and result["tokens"] == 98  # the first token of each window is not scored
    assert abs(sum(phi.values()) - (values["a,b,twin,off"] - values[""])) < 1e-9
    per_token = np.array([result["per_token"]["shapley"][d] for d in PLAYERS])
    per_token_values = result["per_token"]["log_likelihood"]
    np.testing.assert_allclose(per_token.sum(0), np.subtract(per_token_values["a,b,twin,off"], per_token_values[""]), atol=1e-9)
    np.testing.assert_allclose(per_token.mean(1), [phi[d] for d in PLAYERS], atol=1e-12)
    assert abs(phi["a"]) > 1e-3 and abs(phi["b"]) > 1e-3  # the experts do move the text's likelihood
    # Twins differ only in where their gate columns sit in the softmax (float rounding: measured 6e-8).
    assert abs(phi["a"] - phi["twin"]) < 1e-7
    np.testing.assert_allclose(per_token[0], per_token[2], atol=1e-6)
    np.testing.assert_allclose(per_token[3], 0, atol=1e-7)  # measured: exactly 0


def test_shapley_equals_the_average_over_permutations(result):
    v = {frozenset(k.split(",")) - {""}: x for k, x in result["values"].items()}
    for d in PLAYERS:
        marginals = [v[frozenset(p[: p.index(d)]) | {d}] - v[frozenset(p[: p.index(d)])] for p in permutations(PLAYERS)]
        assert abs(np.mean(marginals) - result["shapley"][d]) < 1e-9


def test_values_are_the_runtime_and_pytorch_log_likelihoods(game_dirs, result):
    reference = explain(game_dirs[0], ["b", "a"], TEXT, order=2, window=WINDOW)  # any order: players in bundle order
    assert reference["domains"] == ["a", "b"]
    for subset in ("", "a", "b", "a,b"):
        assert abs(reference["values"][subset] - result["values"][subset]) < 1e-4
    engine = Engine.load(game_dirs[1], ["a", "b"])
    ids = engine.encode(TEXT)
    shifted = engine.logits(ids[:WINDOW]).astype(np.float64)
    shifted -= shifted.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    want = log_p[np.arange(WINDOW - 1), ids[1:WINDOW]]
    np.testing.assert_allclose(result["per_token"]["log_likelihood"]["a,b"][: WINDOW - 1], want, atol=1e-5)


def test_each_tokens_gates_are_those_of_the_position_that_predicted_it(game_dirs, result):
    engine = Engine.load(game_dirs[1], PLAYERS)
    ids = engine.encode(TEXT)
    windows = [engine.logits_with_trace(ids[i : i + WINDOW])[1].gates for i in (0, WINDOW)]
    gates = np.array(result["per_token"]["gates"])
    assert gates.shape == (98, 3, 1 + len(PLAYERS))
    np.testing.assert_allclose(gates[:WINDOW - 1], windows[0][:-1], atol=1e-6)  # token t: row t - 1
    np.testing.assert_allclose(gates[WINDOW - 1 :], windows[1][:-1], atol=1e-6)
    np.testing.assert_allclose(gates[..., -1], 0, atol=1e-7)  # "off" never gets a share


def test_bad_requests_are_refused(game_dirs):
    with pytest.raises(EdgemodeError, match="unknown domain 'zz'"):
        explain(game_dirs[1], ["a", "zz"], TEXT, window=WINDOW)
    with pytest.raises(EdgemodeError, match="the text is empty"):
        explain(game_dirs[1], ["a"], " \n", window=WINDOW)
    with pytest.raises(EdgemodeError, match=r"order must be an integer from 1 to 2 \(the number of experts\), got 3"):
        explain(game_dirs[1], ["a", "b"], TEXT, order=3, window=WINDOW)
    with pytest.raises(EdgemodeError, match="1 to 8 experts"):
        explain(game_dirs[1], [], TEXT, window=WINDOW)
    with pytest.raises(EdgemodeError, match="not a scored token"):
        explain(game_dirs[1], ["a"], TEXT, window=WINDOW, token=WINDOW)  # the first token of the second window
    with pytest.raises(EdgemodeError, match=r"1 to 8 experts \(2\^n passes over the text\), got 9"):
        games.shapley(np.zeros(2**9))


# Faith-Shap ------------------------------------------------------------------------------------


def random_game(n, seed=0):
    return np.random.default_rng(seed).normal(size=(1 << n, 3))  # three games at once (per-token values)


def subsets_of(mask):
    return [m for m in range(mask + 1) if m & mask == m]


@pytest.mark.parametrize("n", [2, 3, 5])
def test_faith_shap_of_an_additive_game_is_its_weights(n):
    weights = np.random.default_rng(n).normal(size=n)
    v = np.array([weights[list(games.players(m))].sum() + 0.7 for m in range(1 << n)])
    for order in range(1, n + 1):
        index = games.faith_shap(v, order)
        np.testing.assert_allclose([index[(i,)] for i in range(n)], games.shapley(v), atol=1e-10)
        np.testing.assert_allclose([index[(i,)] for i in range(n)], weights, atol=1e-10)
        assert all(abs(x) < 1e-10 for t, x in index.items() if len(t) > 1)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
def test_faith_shap_order_1_is_shapley_and_order_n_the_moebius_transform(n):
    v = random_game(n)
    order_1 = games.faith_shap(v, 1)
    np.testing.assert_allclose(np.array([order_1[(i,)] for i in range(n)]), games.shapley(v), atol=1e-9)
    order_n = games.faith_shap(v, n)
    for mask in range(1, 1 << n):  # a(S) = sum over T within S of (-1)^(|S|-|T|) v(T), spelled out
        moebius = sum((-1) ** (mask.bit_count() - t.bit_count()) * v[t] for t in subsets_of(mask))
        np.testing.assert_allclose(order_n[games.players(mask)], moebius, atol=1e-9)


def weighted_least_squares(v, n, order):
    """Faith-Shap by another route: the two constraints fix E on a line of solutions (E = E0 + N z, N
    spanning the constraints' null space), and z is an unconstrained weighted least-squares fit."""
    terms = [t for size in range(order + 1) for t in combinations(range(n), size)]
    X = np.array([[float(set(t) <= set(games.players(m))) for t in terms] for m in range(1 << n)])
    C, d = X[[0, -1]], v[[0, -1]]
    E0 = np.linalg.lstsq(C, d, rcond=None)[0]
    _, _, vt = np.linalg.svd(C)
    N = vt[2:].T
    inner = range(1, (1 << n) - 1)
    sqrt_w = np.sqrt([(n - 1) / (comb(n, m.bit_count()) * m.bit_count() * (n - m.bit_count())) for m in inner])
    A, b = sqrt_w[:, None] * (X[1:-1] @ N), sqrt_w * (v[1:-1] - X[1:-1] @ E0)
    E = E0 + N @ np.linalg.lstsq(A, b, rcond=None)[0]
    return dict(zip(terms, E))


@pytest.mark.parametrize("n,order", [(3, 2), (4, 2), (5, 2), (5, 3), (6, 4)])
def test_faith_shap_is_the_constrained_weighted_least_squares_solution(n, order):
    v = random_game(n, seed=n + order)
    index = games.faith_shap(v, order)
    for k in range(v.shape[1]):
        want = weighted_least_squares(v[:, k], n, order)
        for t, x in index.items():
            assert abs(x[k] - want[t]) < 1e-9, (t, x[k], want[t])
        assert abs(sum(x[k] for x in index.values()) + v[0, k] - v[-1, k]) < 1e-9  # v(all) matched exactly


# Gate traces -----------------------------------------------------------------------------------


def pytorch_trace(mode, ids, domains):
    """The PyTorch model's gate softmax per block and its final-norm output, caught by hooks: the
    gate columns of the backbone, then of `domains` in the order given."""
    gate_logits, caught = [], {}  # the gates run block by block, and only with experts active
    columns = [0] + [1 + mode.domains.index(d) for d in domains]
    hooks = [gate.register_forward_hook(lambda m, i, out: gate_logits.append(out[0, :, columns])) for gate in mode.gates]
    hooks.append(mode.backbone.model.norm.register_forward_hook(lambda m, i, out: caught.update(hidden=out[0])))
    with torch.no_grad():
        mode(torch.as_tensor(ids)[None], domains=domains)
    for hook in hooks:
        hook.remove()
    if not domains:
        return np.ones((len(ids), len(mode.layout.blocks), 1), np.float32), caught["hidden"].numpy()
    return torch.stack([torch.softmax(g, -1) for g in gate_logits], 1).numpy(), caught["hidden"].numpy()


@pytest.mark.parametrize("domains", [[], ["b"], DOMAINS, DOMAINS[::-1]], ids=lambda d: "{" + ",".join(d) + "}")
def test_traced_gates_and_hidden_equal_pytorch(bundles, reference, domains):
    engine = Engine.load(bundles["fp32"], domains)
    ids = np.arange(40) * 7 % 300
    plain = engine.logits(ids, chunk=16)
    logits, trace = engine.logits_with_trace(ids, chunk=16)
    np.testing.assert_array_equal(logits, plain)
    in_bundle_order = [d for d in DOMAINS if d in domains]  # whatever order they were asked in
    gates, hidden = pytorch_trace(reference, ids, in_bundle_order)
    assert trace.domains == in_bundle_order and trace.gates.shape == gates.shape and trace.gates.dtype == np.float32
    np.testing.assert_allclose(trace.gates, gates, rtol=0, atol=1e-5)
    np.testing.assert_allclose(trace.hidden, hidden, rtol=0, atol=1e-4)
    assert trace.gates.std() > 0.01 or not domains  # the gates really mix


def test_each_call_returns_one_type_whatever_the_request(bundles):
    engine = Engine.load(bundles["fp32"], DOMAINS)
    traced, plain = engine.new_cache(8, trace=True), engine.new_cache(8)
    logits, trace = engine.forward_with_trace([3, 5, 7], traced)
    np.testing.assert_array_equal(engine.forward([3, 5, 7], plain), logits)
    assert trace.gates.shape == (3, len(engine.manifest.layout.blocks), 3) and trace.domains == DOMAINS
    assert isinstance(engine.forward([9], traced), np.ndarray)  # a traced request's forward: logits alone
    with pytest.raises(EdgemodeError, match=r"new_cache\(capacity, trace=True\)"):
        engine.forward_with_trace([9], plain)
    assert all(isinstance(t, int) for t in engine.generate_ids([3, 5], 3))


def test_generation_traces_the_position_that_predicted_each_token(bundles):
    engine = Engine.load(bundles["fp32"], DOMAINS)
    prompt = [3, 5, 7, 9, 11]
    steps = list(engine.generate_ids_with_trace(prompt, max_new_tokens=6))
    assert [t for t, _ in steps] == list(engine.generate_ids(prompt, max_new_tokens=6))
    _, trace = engine.logits_with_trace(prompt + [t for t, _ in steps[:-1]])
    for i, (_, step) in enumerate(steps):
        np.testing.assert_allclose(step.gates[0], trace.gates[len(prompt) - 1 + i], atol=1e-5)
        np.testing.assert_allclose(step.hidden[0], trace.hidden[len(prompt) - 1 + i], atol=1e-4)


# The command line and the page --------------------------------------------------------------------


def edgemode(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text(TEXT + "\n")
    return path


def test_cli_explain_json_matches_eval_of_each_subset(game_dirs, text_file):
    result = edgemode("explain", game_dirs[1], "--domains", "b,a", "--text-file", text_file, "--window", WINDOW, "--json")
    assert result.exit_code == 0, result.output
    assert "explain: scoring {a,b} (4/4)" in result.stderr
    out = json.loads(result.stdout)
    assert out["domains"] == ["a", "b"] and out["tokens"] == 98 and out["order"] == 2
    gates, _ = pytorch_trace(store.load(game_dirs[0]), np.array(Engine.load(game_dirs[1], []).encode(TEXT)[:WINDOW]), ["a", "b"])
    np.testing.assert_allclose(out["per_token"]["gates"][: WINDOW - 1], gates[:-1], atol=1e-5)  # columns: backbone, a, b
    assert set(out["values"]) == {"", "a", "b", "a,b"} and set(out["shapley"]) == {"a", "b"}
    assert set(out["faith_shap"]) == {"a", "b", "a,b"}
    assert abs(sum(out["shapley"].values()) - (out["values"]["a,b"] - out["values"][""])) < 1e-9
    for subset, value in out["values"].items():  # a reader can check every v(S) with `edgemode eval`
        scored = edgemode("eval", game_dirs[1], "--domains", subset, "--text-file", text_file, "--window", WINDOW, "--json")
        assert abs(json.loads(scored.stdout)["nll"] + value) < 1e-9
    summary = edgemode("explain", game_dirs[1], "--domains", "a,b", "--text-file", text_file, "--window", WINDOW).stdout
    assert "efficiency" in summary and ("complements" in summary or "substitutes" in summary)


@pytest.mark.parametrize("args,message", [
    (["--domains", "a,zz"], "unknown domain 'zz'"),
    (["--domains", "a,a"], "duplicate domain"),
    (["--domains", ""], "exact values need 1 to 8 experts"),
    (["--domains", "a,b", "--order", "3"], "order must be an integer from 1 to 2"),
    (["--window", "500"], "exceeds"),
])
def test_cli_explain_errors_are_one_line(game_dirs, text_file, args, message):
    result = edgemode("explain", game_dirs[1], "--text-file", text_file, *args)
    assert result.exit_code == 1 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_explain_refuses_an_empty_or_missing_file(game_dirs, tmp_path):
    (tmp_path / "empty.txt").write_text("\n")
    result = edgemode("explain", game_dirs[1], "--text-file", tmp_path / "empty.txt")
    assert result.exit_code == 1 and "the text is empty" in result.stderr
    result = edgemode("explain", game_dirs[1], "--text-file", tmp_path / "missing.txt")
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_cli_run_trace_prints_each_tokens_gates(game_dirs):
    result = edgemode("run", game_dirs[1], "--domains", "a,b", "--prompt", "w1 w2 w3", "--max-new-tokens", 4, "--trace")
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.strip().splitlines()
    assert header == "gate weights per block, backbone/a/b:" and len(lines) == 4
    for line in lines:
        blocks = line.split()[-3:]  # three blocks of backbone/a/b weights
        assert all(abs(sum(map(float, block.split("/"))) - 1) <= 0.015 for block in blocks), line


def test_cli_run_trace_labels_the_columns_in_bundle_order_whatever_the_order_asked(game_dirs):
    traced = {order: edgemode("run", game_dirs[1], "--domains", order, "--prompt", "w1 w2 w3", "--max-new-tokens", 3,
                              "--trace") for order in ("a,b", "b,a")}
    assert traced["a,b"].exit_code == 0 and traced["b,a"].stdout == traced["a,b"].stdout
    header, *lines = traced["b,a"].stdout.strip().splitlines()
    assert header == "gate weights per block, backbone/a/b:"
    engine = Engine.load(game_dirs[1], ["b", "a"])
    prompt = engine.encode("w1 w2 w3")
    tokens = list(engine.generate_ids(prompt, 3))
    gates, _ = pytorch_trace(store.load(game_dirs[0]), np.array(prompt + tokens[:-1]), ["a", "b"])
    for i, line in enumerate(lines):  # token i was predicted at position len(prompt) - 1 + i
        printed = np.array([[float(w) for w in block.split("/")] for block in line.split()[-3:]])
        np.testing.assert_allclose(printed, gates[len(prompt) - 1 + i], atol=0.006)


def chromium(*args):
    done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_page_renders_every_token_in_a_real_browser(game_dirs, text_file, tmp_path):
    page = tmp_path / "page.html"
    result = edgemode("explain", game_dirs[1], "--domains", "a,b", "--text-file", text_file, "--window", WINDOW, "--html", page)
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html  # self-contained
    dom = chromium("--dump-dom", page.as_uri())
    spans = re.findall(r'<span class="tok[^"]*" id="t(\d+)"[^>]*>([^<]*)</span>', dom)
    assert [int(i) for i, _ in spans] == list(range(100))  # every token, in order
    assert " ".join(piece.strip() for _, piece in spans) == TEXT
    assert re.search(r'class="tok by-(a|b)[^"]*"[^>]*style="background:rgba', dom)  # shaded by an expert
    for shot, url in (("page.png", page.as_uri()), ("blank.png", "about:blank")):
        chromium(f"--screenshot={tmp_path / shot}", "--window-size=900,700", url)
    png = (tmp_path / "page.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # A blank page compresses to almost nothing; the rendered text and its shading do not.
    assert len(png) > 10 * (tmp_path / "blank.png").stat().st_size


def test_explain_gathers_evidence_for_the_chosen_token(tmp_path_factory, game_dirs, text_file):
    from edgemode.explain import evidence
    from edgemode.explain.evidence_index import EvidenceIndex
    from edgemode.train.data import SEPARATOR

    bundle = tmp_path_factory.mktemp("evidence") / "bundle"
    words = TEXT.split()
    texts = {d: SEPARATOR.join(" ".join(words[i : i + 30]) for i in range(start, 90, 30)) + "\n"
             for d, start in zip(PLAYERS, [0, 10, 0, 20])}
    export(game_dirs[0], bundle, max_context=128, evidence=EvidenceIndex(4, texts))
    result = explain(bundle, ["a", "b"], TEXT, window=WINDOW, token=40)
    engine = Engine.load(bundle, ["a", "b"])
    _, trace = engine.logits_with_trace(engine.encode(TEXT)[:40])  # token 40 is predicted at position 39
    want = evidence.top_passages(evidence.load_index(bundle), trace.hidden[-1], engine.encode(TEXT)[40], ["a", "b"])
    assert result["evidence"] == want and want and {p["domain"] for p in want} <= {"a", "b"}
    page = render(result, str(bundle))
    assert escape(want[0]["text"]) in page and re.search(r'class="tok[^"]* chosen" id="t40"', page)


def test_explain_of_a_model_directory_adds_concept_gradients(game_dirs):
    from edgemode.explain.concepts import concept_gradients

    text = " ".join(TEXT.split()[:20])
    result = explain(game_dirs[0], ["a", "b"], text, window=WINDOW)
    ids = np.array([int(w[1:]) + 2 for w in text.split()])  # the word tokenizer: "w<i>" is id i + 2
    np.testing.assert_allclose(result["per_token"]["concept_gradients"], concept_gradients(game_dirs[0], ids, ["a", "b"]), atol=1e-6)
    assert np.shape(result["per_token"]["concept_gradients"]) == (19, 3, 2)
    assert "Concept gradients for token" in render(result, str(game_dirs[0]))


def test_explain_of_a_bundle_runs_without_torch(game_dirs, text_file):
    code = BLOCK_HEAVY_IMPORTS + textwrap.dedent(f"""
        from edgemode.explain.attribution import explain
        result = explain({str(game_dirs[1])!r}, ["a", "b"], open({str(text_file)!r}).read(), window={WINDOW})
        assert "torch" not in sys.modules
        print(result["tokens"])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "98"
