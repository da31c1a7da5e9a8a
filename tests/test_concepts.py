"""Concept gradients: the gradient math against finite differences of the model itself."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import DOMAINS, small_model
from edgemode import EdgemodeError
from edgemode.explain.concepts import concept_gradients, gradients
from edgemode.model import store

IDS = [5, 17, 3, 250, 42, 42, 9, 120, 77, 1, 64, 200]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return small_model(tmp_path_factory.mktemp("concepts"))


@pytest.fixture(scope="module")
def mode64(model_dir):
    """The model in float64, so central differences agree with gradients to many digits. transformers'
    RMSNorm computes in float32 even in a float64 model: its norms here compute in float64."""
    mode = store.load(model_dir).double()
    for module in mode.modules():
        if type(module).__name__.endswith("RMSNorm"):
            module.forward = lambda x, n=module: n.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + n.variance_epsilon)
    return mode


def _run(mode, domains, block, position, delta):
    """(log p(next token) at `position`, gate probabilities [1 + domains] at `block`, `position`,
    block `block`'s input at `position`) with `delta` added to that input: to the embedding's output
    for block 0 (an independent check of the block-input hook the gradients use), else at that hook."""
    shift = torch.zeros(1, len(IDS), mode.config.hidden_size, dtype=torch.float64)
    shift[0, position] = torch.as_tensor(delta)
    seen = {}
    model, gate = mode.backbone.model, mode.gates[block]
    hooks = [gate.register_forward_hook(lambda m, args, out: seen.update(x=args[0][0, position], logits=out[0, position]))]
    if block == 0:
        hooks.append(model.embed_tokens.register_forward_hook(lambda m, args, out: out + shift))
    else:
        hooks.append(mode.block_inputs[block].register_forward_hook(lambda m, args, out: out + shift))
    try:
        with torch.no_grad():
            logits = mode(torch.tensor([IDS]), domains=domains)[0, position]
    finally:
        for hook in hooks:
            hook.remove()
    columns = mode.check_domains(domains).columns
    log_p = torch.log_softmax(logits, -1)[IDS[position + 1]].item()
    return log_p, torch.softmax(seen["logits"][columns], -1).numpy(), seen["x"].numpy()


def _gate_gradient(mode, domains, block, x, j):
    """d g / d x of the gate probability of domains[j] at block input x, by hand: with z = x / r,
    r = sqrt(mean(x^2) + eps), d g / d z = g_j (w_j - sum_k g_k w_k) over the backbone's and the
    active domains' rows, and d z / d x = I / r - x x^T / (n r^3)."""
    gate = mode.gates[block]
    columns = mode.check_domains(domains).columns
    weight = gate.weight.detach().numpy()[columns]
    r = np.sqrt((x**2).mean() + gate.eps)
    probs = torch.softmax(torch.as_tensor(weight @ (x / r) + gate.bias.detach().numpy()[columns]), -1).numpy()
    dz = probs[1 + j] * (weight[1 + j] - probs @ weight)
    return dz / r - x * (x @ dz) / (len(x) * r**3)


def _derivative(values: dict, eps: float) -> float:
    """The derivative at 0 from values at -2 eps, -eps, eps, 2 eps (central, fourth order)."""
    return (8 * (values[1] - values[-1]) - (values[2] - values[-2])) / (12 * eps)


@pytest.mark.parametrize("domains", [["a", "b"], ["b"]])
def test_concept_gradient_equals_finite_differences(mode64, domains):
    """Moving block b's input at t by eps along grad g / ||grad g||^2 moves g by eps and f by
    eps * CG. The gate reads the RMS-normalised input, which curves within a few percent of the tiny
    model's small block inputs (norm ~0.25), so each case moves the input by 1e-3 of its norm (a fixed
    eps moves it 100 times further where g saturates and grad g is small)."""
    cg = gradients(mode64, IDS, domains)
    assert cg.shape == (len(IDS) - 1, 2, len(domains)) and np.abs(cg).max() > 1e-3
    for t in range(len(IDS) - 1):
        for b in range(2):
            _, _, x = _run(mode64, domains, b, t, np.zeros(64))
            for j in range(len(domains)):
                grad = _gate_gradient(mode64, domains, b, x, j)
                eps = 1e-3 * np.linalg.norm(x) * np.linalg.norm(grad)
                runs = {k: _run(mode64, domains, b, t, k * eps * grad / (grad @ grad)) for k in (-2, -1, 1, 2)}
                assert _derivative({k: g[1 + j] for k, (_, g, _) in runs.items()}, eps) == pytest.approx(1, abs=1e-6)
                f = _derivative({k: f for k, (f, _, _) in runs.items()}, eps)
                assert f == pytest.approx(cg[t, b, j], rel=1e-5, abs=1e-7), (t, b, j)


def test_the_model_directory_gives_the_same_gradients_in_float32(model_dir, mode64):
    want = gradients(mode64, IDS, DOMAINS)
    got = concept_gradients(model_dir, np.array(IDS), DOMAINS)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-3 * np.abs(want).max())


def test_a_gate_that_ignores_the_hidden_state_has_no_concept_gradient(mode64):
    """g constant in h: grad g = 0, whose pseudo-inverse is 0."""
    mode = copy.deepcopy(mode64)
    with torch.no_grad():
        mode.gates[1].weight.zero_()
    cg = gradients(mode, IDS, DOMAINS)
    assert np.all(cg[:, 1] == 0) and np.abs(cg[:, 0]).max() > 1e-3
    assert gradients(mode, IDS, []).shape == (len(IDS) - 1, 2, 0)


def test_bad_inputs_are_one_line_errors(mode64):
    for ids, message in [([5], "at least two"), ([5, 300], r"in \[0, 300\)"), ([[5, 6]], "at least two"),
                         ([5.0, 6.0], "integers"), ([-1, 4], r"in \[0, 300\)")]:
        with pytest.raises(EdgemodeError, match=message):
            gradients(mode64, ids, DOMAINS)
    with pytest.raises(EdgemodeError, match="unknown domain 'c'"):
        gradients(mode64, IDS, ["c"])
