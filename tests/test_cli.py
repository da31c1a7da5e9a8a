"""The command line, end to end: new -> export -> eval -> run -> inspect, and its errors."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgemode.cli import cli
from edgemode.runtime import Engine, Sampling

from conftest import DOMAINS


def edgemode(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "text.txt"
    words = [f"w{(i * 37) % 290}" for i in range(700)]
    path.write_text(" ".join(words) + "\nplain English words fall back to unknown tokens or bytes.\n")
    return path


def evaluate(path, domains, text_file):
    result = edgemode("eval", path, "--domains", ",".join(domains), "--text-file", text_file, "--json", "--window", 64)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("domains", [[], ["a"], DOMAINS], ids=lambda d: "{" + ",".join(d) + "}")
def test_eval_bundle_matches_model_dir(bundles, model_dir, text_file, domains):
    reference = evaluate(model_dir, domains, text_file)
    fp32 = evaluate(bundles["fp32"], domains, text_file)
    int4 = evaluate(bundles["int4"], domains, text_file)
    assert fp32["tokens"] == reference["tokens"] == int4["tokens"] > 100
    assert abs(fp32["ppl"] - reference["ppl"]) / reference["ppl"] <= 1e-4
    # int4 on random weights: the ppl moves by a few percent at most (measured < 1%).
    assert abs(int4["ppl"] - reference["ppl"]) / reference["ppl"] <= 0.05


def test_new_export_run_inspect(tmp_path, backbone_dir):
    model, bundle = tmp_path / "model", tmp_path / "bundle"
    result = edgemode("new", model, "--backbone", backbone_dir, "--domains", "legal,med", "--blocks", 2,
                      "--expert-layers", 1, "--init", "copy", "--seed", 3)
    assert result.exit_code == 0 and "domains ['legal', 'med']" in result.output
    result = edgemode("export", model, "--domains", "legal,med", "--quant", "int4", "-o", bundle, "--context", 64)
    assert result.exit_code == 0, result.output
    assert "parity {legal,med}" in result.stderr
    result = edgemode("run", bundle, "--domains", "med", "--prompt", "w1 w2 w3", "--max-new-tokens", 6, "--seed", 1,
                      "--temperature", 0.7)
    engine = Engine.load(bundle, ["med"])
    tokens = list(engine.generate_ids(engine.encode("w1 w2 w3"), 6, Sampling(temperature=0.7, seed=1)))
    tokens = [t for t in tokens if t not in engine.eos_token_ids]
    # run streams the decoded text, holding back a last character whose UTF-8 bytes are incomplete
    text = next(t for t in (engine.tokenizer.decode(tokens[:n]) for n in range(len(tokens), -1, -1)) if not t.endswith("\ufffd"))
    assert result.exit_code == 0 and result.stdout == text + "\n" and len(text.strip()) >= 3
    result = edgemode("inspect", bundle, "--verify")
    assert result.exit_code == 0 and "legal, med" in result.stdout and "verified" in result.stdout
    manifest = json.loads(edgemode("inspect", bundle, "--json").stdout)
    assert manifest["domains"] == ["legal", "med"] and manifest["max_context"] == 64


@pytest.mark.parametrize("args,message", [
    (["run", "{bundle}", "--domains", "nope", "--prompt", "hi"], "unknown domain 'nope'"),
    (["run", "{bundle}", "--prompt", "hi", "--top-p", "0"], "top_p"),
    (["run", "{bundle}", "--prompt", "hi", "--max-new-tokens", "0"], "max_new_tokens"),
    (["export", "{bundle}"], "not a MoDE model directory"),
    (["inspect", "{model}"], "not an edgemode bundle"),
    (["new", "{tmp}/m", "--backbone", "{tmp}", "--domains", "a"], "not a Hugging Face model directory"),
    (["new", "{tmp}/m", "--backbone", "{tmp}", "--domains", "../x"], "invalid domain name"),
])
def test_errors_are_one_line_without_traceback(bundles, model_dir, tmp_path, args, message):
    args = [a.format(bundle=bundles["fp32"], model=model_dir, tmp=tmp_path) for a in args]
    done = subprocess.run([sys.executable, "-m", "edgemode", *args], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("edgemode:")]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_debug_shows_the_traceback(bundles):
    done = subprocess.run([sys.executable, "-m", "edgemode", "--debug", "run", str(bundles["fp32"]), "--domains", "x",
                           "--prompt", "hi"], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_eval_refuses_a_window_beyond_the_context(bundles, text_file):
    result = CliRunner().invoke(cli, ["eval", str(bundles["fp32"]), "--text-file", str(text_file), "--window", "4096"])
    assert result.exit_code == 1 and "exceeds this bundle's context" in result.stderr


def test_eval_refuses_text_that_is_not_utf8(bundles, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"w1 w2 \xff\xfe w3")
    result = CliRunner().invoke(cli, ["eval", str(bundles["fp32"]), "--text-file", str(bad)])
    assert result.exit_code == 1 and "not UTF-8" in result.stderr


def test_unsupported_backbone_is_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=300)).save_pretrained(tmp_path / "gpt2")
    result = CliRunner().invoke(cli, ["new", str(tmp_path / "m"), "--backbone", str(tmp_path / "gpt2"), "--domains", "a"])
    assert result.exit_code == 1 and "unsupported backbone model_type 'gpt2'" in result.stderr
    assert not (tmp_path / "m").exists()
