"""The MoDE model in PyTorch: a frozen Hugging Face backbone plus per-block domain experts.

Block b runs the backbone's layers and, for every active expert, that expert's k layers on the
same input x_b. A per-block, per-token gate mixes them:
    y_b = softmax(W_b x_b + c_b)[backbone, experts...] . [f_bb(x_b), f_1(x_b), ...]
Only the active experts' logits enter the softmax, so a subset S equals the full model with the
other logits at -inf, and S = {} is exactly the backbone. Layers are the backbone's own classes.
"""

from __future__ import annotations

import torch
from torch import nn

from edgemode import EdgemodeError
from edgemode.domains import DomainSet
from edgemode.layout import Layout

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
INITIAL_EXPERT_LOGIT = -2.0


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
        self.gates = nn.ModuleList(nn.Linear(hidden, 1 + len(domains)) for _ in layout.blocks)
        for gate in self.gates:  # start close to the backbone: each expert gets ~12% of the mix alone
            nn.init.zeros_(gate.weight)
            nn.init.constant_(gate.bias, INITIAL_EXPERT_LOGIT)
            nn.init.zeros_(gate.bias[:1])

    @property
    def config(self):
        return self.backbone.config

    def check_domains(self, domains) -> DomainSet:
        return DomainSet(self.domains, domains, "this model")

    def forward(self, input_ids: torch.Tensor, domains=None) -> torch.Tensor:
        """Logits (B, S, V) for a whole sequence, with the experts in `domains` active (default: all)."""
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
            y = run([model.layers[i] for i in block], block, x)
            if active:
                weights = torch.softmax(self.gates[b](x)[..., columns], dim=-1)
                sources = self.layout.expert_sources[b]
                outputs = [y] + [run(self.experts[d][b], sources, x) for d in active]
                y = sum(weights[..., j : j + 1] * out for j, out in enumerate(outputs))
            x = y
        return self.backbone.lm_head(model.norm(x))
