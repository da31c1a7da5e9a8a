"""examples/c/edgemode-app, the C program on onnxruntime-genai's C library: its greedy text equals
`edgemode run`'s, its --bench prints JSON, and each bad input is one line.

The fixture builds it with `make app` (the system C compiler; the two libraries from PyPI's wheels,
beside the binary). scripts/arm64_check.py runs the same token check on aarch64 under emulation.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemode.cli import cli
from edgemode.demo import default_bundle_dir
from edgemode.export import export
from edgemode.runtime import Engine
from edgemode.runtime.genai_folder import write

from conftest import bos_bpe_model

REPO = Path(__file__).resolve().parent.parent
PROMPT = "Permission is hereby granted"  # the app's default prompt
NEW_TOKENS = 24


@pytest.fixture(scope="module")
def app() -> Path:
    done = subprocess.run(["make", "-s", "-C", str(REPO), "app", f"VENV={os.sys.prefix}"], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return REPO / "examples" / "c" / "build" / os.uname().machine / "edgemode-app"


def run_app(app: Path, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    """The app with this environment's library settings replaced by `env`'s."""
    base = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "ORT_LIB_PATH")}
    return subprocess.run([str(app), *map(str, args)], capture_output=True, text=True, timeout=600, env={**base, **(env or {})})


def run_cli(bundle: Path, domains: list[str], n: int) -> str:
    done = CliRunner().invoke(cli, ["run", str(bundle), "--domains", ",".join(domains), "--prompt", PROMPT,
                                    "--max-new-tokens", str(n)])
    assert done.exit_code == 0, done.output
    return done.stdout


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An int4 bundle with a tokenizer genai reads (BOS first) and its genai folder (default {legal})."""
    root = tmp_path_factory.mktemp("app")
    export(bos_bpe_model(root), root / "bundle", quant="int4", max_context=128)
    write(root / "bundle", root / "genai", ["legal"])
    return root / "bundle", root / "genai"


@pytest.mark.parametrize("domains", [[], ["legal"]])
def test_app_text_equals_edgemode_run(app, tiny, domains):
    bundle, folder = tiny
    done = run_app(app, folder, "--domains", ",".join(domains), "--max-new-tokens", NEW_TOKENS)
    assert done.returncode == 0, done.stderr
    want = run_cli(bundle, domains, NEW_TOKENS)
    assert want.strip() and done.stdout == want
    # the check can fail: without BOS, as genai's tokenizer encodes by default, the text differs
    engine = Engine.load(bundle, domains)
    ids = engine.encode(PROMPT)
    assert ids[0] == engine.tokenizer.token_to_id("<s>")
    assert list(engine.generate_ids(ids[1:], NEW_TOKENS)) != list(engine.generate_ids(ids, NEW_TOKENS))


def test_app_on_the_default_bundle(app, tmp_path):
    bundle = default_bundle_dir()
    if not (bundle / "manifest.json").is_file():
        pytest.skip(f"no default bundle at {bundle} (`make demo` builds it)")
    write(bundle, tmp_path / "genai")
    for domains in ([], ["legal"]):
        done = run_app(app, tmp_path / "genai", "--domains", ",".join(domains), "--max-new-tokens", 32)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() and done.stdout == run_cli(bundle, domains, 32), domains


@pytest.mark.parametrize("domains,decoder", [(None, "decoder.legal.onnx"), ("", "decoder.onnx"),
                                             ("med,legal", "decoder.legal.med.onnx")])
def test_app_bench_prints_json_with_positive_figures(app, tiny, domains, decoder):
    args = [] if domains is None else ["--domains", domains]
    done = run_app(app, tiny[1], "--bench", *args, "--prompt-tokens", 16, "--new-tokens", 8, "--repeat", 2)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["decoder"] == decoder and result["domains"] == decoder.split(".")[1:-1]
    assert (result["prompt_tokens"], result["new_tokens"], result["repeat"]) == (16, 8, 2)
    assert all(result[k] > 0 for k in ("load_s", "ttft_ms", "decode_tok_s", "peak_rss_mb")), result


def test_app_errors_are_one_line(app, tiny, tmp_path):
    folder = tiny[1]
    lonely = tmp_path / "bin" / "edgemode-app"  # without the libraries beside it
    lonely.parent.mkdir()
    shutil.copy2(app, lonely)
    (tmp_path / "empty").mkdir()
    wrong = tmp_path / "wrong"  # onnxruntime's library under genai's name
    wrong.mkdir()
    (wrong / "libonnxruntime-genai.so").symlink_to(app.parent / "libonnxruntime.so")
    ort = str(app.parent / "libonnxruntime.so")
    cases = [
        ((app, tmp_path / "nope"), None, 1, f"no folder at {tmp_path / 'nope'}"),
        ((app, tmp_path / "empty"), None, 1, "is not a folder written by `edgemode genai` (no genai_config.json)"),
        ((app, folder, "--domains", "legal,zz"), None, 1,
         f"unknown domain set {{legal,zz}}: {folder} has decoders for {{}} {{legal}} {{med}} {{legal,med}}"),
        ((lonely, folder), None, 1, "cannot load onnxruntime (libonnxruntime.so: cannot open"),
        ((app, folder), {"ORT_LIB_PATH": str(tmp_path / "nope.so")}, 1, "cannot load onnxruntime"),
        ((lonely, folder), {"ORT_LIB_PATH": ort}, 1,
         "cannot load libonnxruntime-genai.so (libonnxruntime-genai.so: cannot open"),
        ((lonely, folder), {"LD_LIBRARY_PATH": str(wrong), "ORT_LIB_PATH": ort}, 1,
         "libonnxruntime-genai.so has no OgaResultGetError: it is not onnxruntime-genai's C library"),
        ((app, folder, "--max-new-tokens", "0"), None, 2, "--max-new-tokens needs a whole number"),
        ((app, folder, "--bench", "--new-tokens", "1"), None, 2, "--new-tokens must be at least 2"),
        ((app,), None, 2, "no FOLDER given"),
    ]
    for (binary, *args), env, status, message in cases:
        done = run_app(binary, *args, env=env)
        assert (done.returncode, done.stdout) == (status, ""), (args, done.stderr)
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("edgemode-app: error: "), done.stderr
        assert message in done.stderr, done.stderr
