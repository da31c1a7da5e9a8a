"""Exported bundles against the PyTorch reference, through the runtime.

fp32: max |delta logits| <= 1e-3 over a prefill and 20 cached decode steps (float rounding is
~1e-6 here). int4: RMS(delta) / RMS(logits) within the export's own int4 tolerance (0.5, see
export/exporter.py): weight-only int4 in 32-wide blocks measures 0.1-0.2 on these random models.
"""

import numpy as np
import pytest
import torch

from edgemode.export.exporter import TOLERANCES
from edgemode.runtime import Engine

from conftest import DOMAINS

SUBSETS = [[], ["a"], DOMAINS]
PROMPT, STEPS = 8, 20


def token_ids(n, seed=0):
    return np.random.default_rng(seed).integers(0, 300, n)


def torch_logits(reference, ids, domains):
    with torch.no_grad():
        return reference(torch.as_tensor(ids)[None], domains=domains)[0].numpy()


def prefill_then_decode(engine, ids):
    cache = engine.new_cache(len(ids))
    out = [engine.forward(ids[:PROMPT], cache)]
    out += [engine.forward(ids[i : i + 1], cache) for i in range(PROMPT, len(ids))]
    return np.concatenate(out)


@pytest.mark.parametrize("domains", SUBSETS, ids=lambda d: "{" + ",".join(d) + "}")
def test_fp32_bundle_matches_pytorch_over_prefill_and_decode(bundles, reference, domains):
    ids = token_ids(PROMPT + STEPS)
    engine = Engine.load(bundles["fp32"], domains)
    assert np.abs(prefill_then_decode(engine, ids) - torch_logits(reference, ids, domains)).max() <= 1e-3


@pytest.mark.parametrize("domains", SUBSETS, ids=lambda d: "{" + ",".join(d) + "}")
def test_int4_bundle_within_stated_tolerance(bundles, reference, domains):
    metric, limit = TOLERANCES["int4"]
    ids = token_ids(PROMPT + STEPS, seed=1)
    want = torch_logits(reference, ids, domains)
    delta = prefill_then_decode(Engine.load(bundles["int4"], domains), ids) - want
    rms_rel = np.sqrt((delta**2).mean() / (want**2).mean())
    assert metric == "rms_rel_error" and rms_rel <= limit


def test_chunked_prefill_equals_unchunked(bundles):
    engine = Engine.load(bundles["fp32"], DOMAINS)
    ids = token_ids(50, seed=2)
    whole = engine.logits(ids, chunk=len(ids))
    for chunk in (1, 7, 16):
        assert np.abs(engine.logits(ids, chunk=chunk) - whole).max() <= 1e-4
    greedy = [list(engine.generate_ids(ids, 8, prefill_chunk=chunk)) for chunk in (len(ids), 1, 7, 32)]
    assert all(tokens == greedy[0] for tokens in greedy)


def test_int4_bundle_is_smaller(bundles):
    from edgemode.bundle import manifest

    size = {q: sum(e.bytes for e in manifest.read(b).files.values()) for q, b in bundles.items()}
    assert size["int4"] < 0.5 * size["fp32"]
