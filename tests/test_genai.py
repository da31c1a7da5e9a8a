"""onnxruntime-genai loads the folder `edgemode genai` writes, and generates what edgemode does.

genai runs in its own virtualenv, never a project dependency: `make test` makes it
($EDGEMODE_GENAI_PYTHON, default $EDGEMODE_CACHE/genai-venv). Without it these tests fail, they
do not skip. The SmolLM2 checks (genai's own tokenizer) are in test_smollm2.py.
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgemode.bundle import names
from edgemode.cache import cache_dir
from edgemode.runtime import Engine
from edgemode.runtime.genai_folder import overlay, write

from conftest import DOMAINS

CLIENT = Path(__file__).with_name("genai_client.py")
NEAR_TIE = 0.01  # logits; the tiny random models' top-2 gaps go down to 0.001


def genai(folder: Path, requests: list[dict]) -> list[dict]:
    """Answers from og.Model in genai's virtualenv (tests/genai_client.py)."""
    python = Path(os.environ.get("EDGEMODE_GENAI_PYTHON") or cache_dir() / "genai-venv" / "bin" / "python")
    if not python.exists():
        pytest.fail(f"no onnxruntime-genai virtualenv at {python}: `make test` creates it")
    done = subprocess.run([str(python), str(CLIENT), str(folder)], input=json.dumps(requests), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("quant, kv", [("fp32", "fp32"), ("int4", "fp32"), ("int4", "int8"), ("int4", "int4")])
def test_genai_generates_the_tokens_edgemode_generates(bundles, tmp_path, quant, kv):
    folder = tmp_path / "genai"
    write(bundles[quant], folder, ["a"], kv)
    sets = [None, [], DOMAINS]  # None: the folder's default set, {a}
    prompt, n = [3, 5, 7, 9, 11, 13], 32
    answers = genai(folder, [{"overlay": None if s is None else overlay(s), "prompt_ids": prompt, "new_tokens": n,
                              "exact": True} for s in sets])
    for domains, answer in zip(sets, answers):
        engine = Engine.load(bundles[quant], ["a"] if domains is None else domains, kv=kv)
        engine.eos_token_ids = set()  # genai masks EOS until n tokens: both make exactly n
        if kv == "fp32":
            assert answer["tokens"] == list(engine.generate_ids(prompt, n))
            continue
        # A quantized cache rounds each key and value: an fp32 difference of one ulp between the two
        # runtimes' kernels can flip a rounding, and a random model's near-ties then pick another
        # token. So each of genai's tokens must be edgemode's choice after genai's own tokens, or
        # within NEAR_TIE of it.
        logits = engine.logits(prompt + answer["tokens"][:-1], chunk=1)[len(prompt) - 1:]
        chosen = logits[np.arange(n), answer["tokens"]]
        assert (chosen >= logits.max(-1) - NEAR_TIE).all(), (logits.max(-1) - chosen).max()


def test_genai_folder_links_the_weights_and_names_every_set(bundles, tmp_path):
    folder = tmp_path / "genai"
    assert write(bundles["int4"], folder) == [[], ["a"], ["b"], ["a", "b"]]
    config = json.loads((folder / "genai_config.json").read_text())
    assert config["model"]["decoder"]["filename"] == names.composed_file(DOMAINS)
    for data in folder.glob("*.data"):
        assert data.stat().st_ino == (bundles["int4"] / data.name).stat().st_ino  # a hard link, not a copy
    for decoder in folder.glob("decoder*.onnx"):  # no weight bytes of their own: all point into the data files
        inline = [t.name for t in onnx.load(str(decoder), load_external_data=False).graph.initializer
                  if t.data_location != onnx.TensorProto.EXTERNAL and len(t.raw_data) + 8 * len(t.int64_data) > 64]
        assert inline == []


def test_genai_folder_refuses_to_overwrite_other_things(bundles, tmp_path):
    from edgemode import EdgemodeError

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(EdgemodeError, match="refusing to overwrite"):
        write(bundles["int4"], tmp_path / "mine")
    with pytest.raises(EdgemodeError, match="unknown domain"):
        write(bundles["int4"], tmp_path / "g", ["zz"])
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me" and not (tmp_path / "g").exists()


def test_genai_folder_refuses_a_tampered_bundle_and_leaves_nothing(bundles, tmp_path):
    """The folder goes onto devices: a weight byte changed in place (same size) is caught by sha256."""
    import shutil

    from click.testing import CliRunner

    from edgemode.cli import cli

    bundle = tmp_path / "bundle"
    shutil.copytree(bundles["int4"], bundle)
    write(bundle, tmp_path / "genai")
    before = {p.name: p.read_bytes() for p in (tmp_path / "genai").iterdir() if not p.name.endswith(".data")}
    for name in ("backbone.block0.onnx.data", "gates.block0.onnx", "tokenizer.json"):
        original = (bundle / name).read_bytes()
        os.unlink(bundle / name)  # a new file: the folder's hard links keep the original bytes
        middle = len(original) // 2
        (bundle / name).write_bytes(original[:middle] + bytes([original[middle] ^ 1]) + original[middle + 1:])
        done = CliRunner().invoke(cli, ["genai", str(bundle), "-o", str(tmp_path / "genai")])
        assert done.exit_code == 1
        assert done.output == f"edgemode: error: bundle file {name} does not match its sha256 in the manifest (corrupt or tampered)\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "genai"]  # no temporary folder left
        assert {p.name: p.read_bytes() for p in (tmp_path / "genai").iterdir() if not p.name.endswith(".data")} == before
        (bundle / name).write_bytes(original)
