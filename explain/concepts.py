"""Concept gradients of a MoDE model: how much more of a domain's gate would change a prediction.

Following "Concept Gradient: Concept-based Interpretation Without Linear Assumption" (Bai et al.,
ICLR 2023): with a model f(x) and a concept g(x), both differentiable functions of the same
representation x, the concept gradient is CG = grad f(x) . pinv(grad g(x)). Here, for a text of
token ids x_0 .. x_{T-1}, row t of the result (t = 0 .. T-2) is about predicting x_{t+1}:

- x = h_b[t], the hidden state entering block b at position t (the input of its backbone layers,
  its experts and its gate);
- f = log p(x_{t+1} | x_0 .. x_t), the log-probability of the actual next token with `domains`
  active, as a function of h_b[t] (every other position's block-b input held fixed);
- g = the gate probability of domain d at block b and position t: softmax over the backbone's and
  the active domains' gate logits of W_b h_b[t] + c_b, d's entry, a non-linear function of h_b[t];
- CG[t, b, d] = (grad f . grad g) / ||grad g||^2, the pseudo-inverse of the scalar concept's
  gradient; 0 where grad g = 0 (the pseudo-inverse of a zero vector is zero).

CG is the first-order change of f per unit change of g when h_b[t] moves along grad g / ||grad g||^2,
the direction that changes g fastest per unit of g: positive when more of d's expert at that block
and token would have made the actual next token more likely.

Where a gate saturates (g or 1 - g near 0, as at SmolLM2's first position), grad g is tiny and CG
grows like 1 / ||grad g||: a unit of g is then far outside the linear range. Measured on the default
model over 512 tokens of held-out legal text: |CG| up to 7e16 at the first position (the last
block's legal gate is 1e-19 there); elsewhere median 3.4, 99th percentile 370.

Cost: one forward and one backward pass (plus a cheap one per block and domain for grad g, which
depends on h_b[t] alone). grad f_t at position t is the diagonal of a Jacobian: the forward pass
uses attention whose gradient flows from a query only to its own position's key and value (values
unchanged), so the gradient of sum_t f_t at h_b[t] is exactly d f_t / d h_b[t].
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from transformers import AttentionInterface
from transformers.models.llama.modeling_llama import repeat_kv

from edgemode import EdgemodeError
from edgemode.domains import DomainSet
from edgemode.model import store

DIAGONAL = "edgemode_diagonal_gradient"  # the attention implementation below, as transformers names it


def concept_gradients(model_dir: str | Path, token_ids, domains) -> np.ndarray:
    """CG [tokens - 1, blocks, domains] of the model directory's MoDE model on `token_ids` with
    `domains` active (see the module's docstring); row t is about predicting token_ids[t + 1]."""
    return gradients(store.load(model_dir), token_ids, domains)


def gradients(mode, token_ids, domains) -> np.ndarray:
    """`concept_gradients` of a loaded MoDE model."""
    domains = mode.check_domains(domains)
    ids = np.asarray(token_ids)
    if ids.ndim != 1 or len(ids) < 2 or not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= mode.config.vocab_size:
        raise EdgemodeError(f"token ids must be at least two integers in [0, {mode.config.vocab_size})")
    ids = torch.as_tensor(ids.astype(np.int64))[None]
    blocks, hidden = len(mode.layout.blocks), mode.config.hidden_size
    dtype = mode.backbone.model.embed_tokens.weight.dtype
    shifts = [torch.zeros(1, ids.shape[1], hidden, dtype=dtype, requires_grad=True) for _ in range(blocks)]
    with torch.enable_grad(), shifted_block_inputs(mode, domains, shifts) as gates, diagonal_attention(mode.config):
        logits = mode(ids, domains=domains)[0]
        f = torch.log_softmax(logits[:-1].float(), -1).gather(-1, ids[0, 1:, None])[:, 0]
        # g at position t depends on that position's block input alone: one backward per (block, domain).
        grad_g = torch.stack([
            torch.stack([torch.autograd.grad(gates[b][:, 1 + j].sum(), shifts[b], retain_graph=True)[0][0, :-1]
                         for j in range(len(domains))], -2)
            for b in range(blocks)], 1) if domains else torch.zeros(len(f), blocks, 0, hidden)
        grad_f = torch.stack([grad[0, :-1] for grad in torch.autograd.grad(f.sum(), shifts)], 1)  # [tokens - 1, blocks, hidden]
    grad_f, grad_g = grad_f.double(), grad_g.double()
    norm = (grad_g**2).sum(-1)
    along = (grad_g * grad_f[:, :, None]).sum(-1)
    return torch.where(norm > 0, along / torch.where(norm > 0, norm, 1), 0).numpy()


@contextmanager
def shifted_block_inputs(mode, domains: DomainSet, shifts: list[torch.Tensor]):
    """Within the context, block b's input is h_b + shifts[b] for everything that reads it (its
    first backbone layer, its gate, each active expert's first layer), and the context's value
    gets, per block, the gate probabilities [tokens, 1 + domains] of the last forward pass."""
    layers = mode.backbone.model.layers
    columns = domains.columns
    gates = [None] * len(shifts)

    def shift(b):
        return lambda module, args: (args[0] + shifts[b], *args[1:])

    def keep(b):
        def hook(module, args, out):
            gates[b] = torch.softmax(out[0, :, columns], -1)
        return hook

    handles = []
    for b, block in enumerate(mode.layout.blocks):
        readers = [layers[block[0]], mode.gates[b]] + [mode.experts[d][b][0] for d in domains]
        handles += [reader.register_forward_pre_hook(shift(b)) for reader in readers]
        handles.append(mode.gates[b].register_forward_hook(keep(b)))
    try:
        yield gates
    finally:
        for handle in handles:
            handle.remove()


def _attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """transformers' eager attention, except that the output at t depends, for gradients, only on
    the key and value at t (and its own query): the others enter detached. Values are the same."""
    key, value = repeat_kv(key, module.num_key_value_groups), repeat_kv(value, module.num_key_value_groups)
    fixed_key, fixed_value = key.detach(), value.detach()
    own = torch.diag_embed((query * (key - fixed_key)).sum(-1))  # zero, with the gradient of q_t . k_t
    scores = (query @ fixed_key.transpose(2, 3) + own) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : key.shape[-2]]
    weights = torch.softmax(scores, -1, dtype=torch.float32).to(query.dtype)
    output = weights @ fixed_value + weights.diagonal(dim1=-2, dim2=-1)[..., None] * (value - fixed_value)
    return output.transpose(1, 2).contiguous(), weights


AttentionInterface.register(DIAGONAL, _attention)


@contextmanager
def diagonal_attention(config):
    """Within the context, the backbone's and the experts' layers (which share `config`) attend
    with `_attention`."""
    before = config._attn_implementation
    config._attn_implementation = DIAGONAL
    try:
        yield
    finally:
        config._attn_implementation = before
