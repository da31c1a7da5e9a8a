"""The MoDE model in PyTorch: a frozen Hugging Face backbone plus per-block residual domain experts.

Block b runs the backbone's layers f_bb and, for every active expert d, that expert's k layers E_d
on the same input x_b. Each expert adds what it changes, weighted by a per-block, per-token gate:
    y_b = f_bb(x_b) + sum_d a_d (E_d(x_b) - x_b),   a = softmax(W_b rms(x_b) + c_b)[backbone, S]
An expert's output projections start at zero (block expansion, as in LLaMA-Pro), so E_d(x) = x and
an untrained expert leaves the model exactly the backbone. Only the active experts' logits enter
the softmax, so a subset S equals the full model with the other logits at -inf, and S = {} is
exactly the backbone. The gate reads the RMS-normalised x_b: block inputs' scales differ a
hundredfold between blocks, and a gate should see their direction. Layers are the backbone's own classes.
"""

from __future__ import annotations

import torch
from torch import nn

from edgemode import EdgemodeError
from edgemode.domains import DomainSet
from edgemode.layout import Layout

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
INITIAL_EXPERT_LOGIT = 0.0  # an expert alone starts with half of its block's gate


def check_backbone_config(config) -> None:
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise EdgemodeError(
            f"unsupported backbone model_type {config.model_type!r}; edgemode supports {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if config.hidden_act != "silu":
        raise EdgemodeError(f"unsupported backbone activation {config.hidden_act!r}; edgemode supports 'silu'")


def sliding_window(config, layer: int) -> int | None:
    """The attention window of backbone layer `layer`, or None for full causal attention."""
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and layer_types[layer] != "sliding_attention":
        return None
    return window


def causal_mask(length: int, window: int | None, dtype: torch.dtype) -> torch.Tensor:
    """Additive (1, 1, S, S) mask: token i sees j <= i, and only j > i - window with a window."""
    i = torch.arange(length)[:, None]
    j = torch.arange(length)[None, :]
    allowed = j <= i
    if window is not None:
        allowed &= j > i - window
    mask = torch.zeros(length, length, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def new_expert(backbone: nn.Module, layout: Layout) -> nn.ModuleList:
    """Uninitialised expert layers for every block, of the backbone's own decoder-layer class."""
    layer_class = type(backbone.model.layers[0])
    return nn.ModuleList(
        nn.ModuleList(layer_class(backbone.config, layer_idx=src) for src in sources)
        for sources in layout.expert_sources
    )


def output_projections(layer: nn.Module) -> list[nn.Linear]:
    """The projections that write into a decoder layer's residual stream: zero, the layer is the identity."""
    return [layer.self_attn.o_proj, layer.mlp.down_proj]


class Gate(nn.Linear):
    """One block's gate logits, backbone row first, from the RMS-normalised block input."""

    def __init__(self, hidden: int, rows: int, eps: float):
        super().__init__(hidden, rows)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class MoDE(nn.Module):
    """A frozen causal-LM backbone with domain experts and per-block gates.

    `gates[b]` has one output row for the backbone followed by one per domain, in `domains` order.
    """

    def __init__(self, backbone: nn.Module, layout: Layout, domains: list[str], experts: dict[str, nn.ModuleList],
                 source: str = "", fingerprint: str = ""):
        super().__init__()
        self.source, self.fingerprint = source, fingerprint  # where the backbone came from, and its stamp
        check_backbone_config(backbone.config)
        self.backbone = backbone.eval().requires_grad_(False)
        self.layout = layout
        self.domains = list(domains)
        self.experts = nn.ModuleDict(experts)
        hidden = backbone.config.hidden_size
        eps = float(backbone.config.rms_norm_eps)
        self.gates = nn.ModuleList(Gate(hidden, 1 + len(domains), eps) for _ in layout.blocks)
        # Each block's input passes through one of these: a place for hooks that must reach every reader of x_b.
        self.block_inputs = nn.ModuleList(nn.Identity() for _ in layout.blocks)
        for gate in self.gates:
            nn.init.zeros_(gate.weight)
            nn.init.constant_(gate.bias, INITIAL_EXPERT_LOGIT)
            nn.init.zeros_(gate.bias[:1])

    @property
    def config(self):
        return self.backbone.config

    def check_domains(self, domains) -> DomainSet:
        return DomainSet(self.domains, domains, "this model")

    def forward(self, input_ids: torch.Tensor, domains=None, gate_weights: list | None = None) -> torch.Tensor:
        """Logits (B, S, V) for a whole sequence, with the experts in `domains` active (default: all).
        `gate_weights`, if given, receives each block's (B, S, 1 + active) gate weights."""
        active = self.check_domains(domains)
        columns = active.columns
        model = self.backbone.model
        x = model.embed_tokens(input_ids)
        positions = torch.arange(input_ids.shape[1], device=x.device)[None]
        rope = model.rotary_emb(x, positions)
        masks = {}

        def run(layers, sources, h):
            for layer, src in zip(layers, sources):
                window = sliding_window(self.config, src)
                if window not in masks:
                    masks[window] = causal_mask(h.shape[1], window, h.dtype).to(h.device)
                h = layer(h, attention_mask=masks[window], position_ids=positions, position_embeddings=rope)
                h = h[0] if isinstance(h, tuple) else h
            return h

        for b, block in enumerate(self.layout.blocks):
            x = self.block_inputs[b](x)
            y = run([model.layers[i] for i in block], block, x)
            if active:
                weights = torch.softmax(self.gates[b](x)[..., columns], dim=-1)
                sources = self.layout.expert_sources[b]
                for j, d in enumerate(active, start=1):
                    y = y + weights[..., j : j + 1] * (run(self.experts[d][b], sources, x) - x)
                if gate_weights is not None:
                    gate_weights.append(weights)
            x = y
        return self.backbone.lm_head(model.norm(x))
