"""ONNX graphs for each MoDE component, built from the PyTorch modules' weights.

Decoder layers are emitted with onnxruntime's fused CPU operators, the same ones its genai
model builder uses: SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization for RMSNorm,
GroupQueryAttention with built-in rotary embedding and a KV cache that can share one buffer for
past and present. Plain MatMuls carry the weights so MatMulNBitsQuantizer can turn them into int4.

GroupQueryAttention wants a head size that is a multiple of 16. Smaller or odd head sizes are
zero-padded per rotary half, which leaves q.k, the attention output and the rotation unchanged.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from edgemode.bundle.manifest import Shape
from edgemode.bundle.names import GATE_LOGITS, HIDDEN, HIDDEN_OUT, INPUT_IDS, LOGITS, SEQLENS, TOTAL, component_kv
from edgemode.model.mode import sliding_window

OPSETS = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy()


class Graph:
    """A small helper that accumulates nodes and initializers for one ONNX graph."""

    def __init__(self, name: str):
        self.name, self.nodes, self.initializers, self.inputs, self.outputs = name, [], [], [], []
        self._count = 0

    def input(self, name, dtype, shape):
        self.inputs.append(helper.make_tensor_value_info(name, dtype, shape))
        return name

    def output(self, name, dtype, shape):
        self.outputs.append(helper.make_tensor_value_info(name, dtype, shape))

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: int | list[str] = 1, domain: str = "", **attrs):
        if isinstance(outputs, int):
            outputs = [f"{op_type}_{self._count}_{i}" for i in range(outputs)]
        self._count += 1
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=f"{op_type}_{self._count}", domain=domain, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def skip_norm(self, x: str, residual: str, weight: str, eps: float) -> tuple[str, str]:
        """RMSNorm(x + residual) * weight and x + residual. The mean and inverse-std outputs stay
        unnamed, so onnxruntime does not write them (as genai's builder leaves them)."""
        h, total = f"SkipNorm_{self._count}_h", f"SkipNorm_{self._count}_sum"
        self.op("SkipSimplifiedLayerNormalization", [x, residual, weight], [h, "", "", total], domain="com.microsoft", epsilon=eps)
        return h, total

    def linear(self, x: str, prefix: str, linear: torch.nn.Linear, pad=None, out: str | None = None) -> str:
        """x @ W^T (+ b). `pad` reshapes the weight's output or input dim for padded heads."""
        return self.packed_linear(x, prefix, [(linear, pad)], out)

    def packed_linear(self, x: str, prefix: str, linears, out: str | None = None) -> str:
        """One MatMul for several (linear, pad) pairs on the same input, outputs concatenated.

        One wide int4 MatMul costs much less than several narrow ones at decode (one token).
        """
        weights, biases = [], []
        for linear, pad in linears:
            weight = _np(linear.weight).T  # (in, out): the layout MatMulNBitsQuantizer expects
            bias = np.zeros(weight.shape[1], np.float32) if linear.bias is None else _np(linear.bias)
            if pad is not None:
                weight, bias = pad(weight, bias)
            weights.append(weight)
            biases.append(bias)
        weight = np.concatenate(weights, axis=1)
        bias = None if all(l.bias is None for l, _ in linears) else np.concatenate(biases)
        y = self.op("MatMul", [x, self.const(f"{prefix}.weight", weight)], [out] if out and bias is None else 1)
        if bias is not None:
            y = self.op("Add", [y, self.const(f"{prefix}.bias", bias)], [out] if out else 1)
        return y

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=OPSETS, producer_name="edgemode")
        model.ir_version = 10
        return model


def pad_heads(shape: Shape, heads: int, axis: int, array: np.ndarray) -> np.ndarray:
    """Zero-pad each head along `axis` from head_dim to kv_head_dim, per rotary half."""
    hd, pd = shape.head_dim, shape.kv_head_dim
    if hd == pd or array is None:
        return array
    moved = np.moveaxis(array, axis, 0)
    split = moved.reshape(heads, 2, hd // 2, *moved.shape[1:])
    padded = np.zeros((heads, 2, pd // 2, *moved.shape[1:]), dtype=array.dtype)
    padded[:, :, : hd // 2] = split
    return np.moveaxis(padded.reshape(heads * pd, *moved.shape[1:]), 0, axis)


def rotary_cache(backbone, shape: Shape, max_context: int) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin caches (max_context, kv_head_dim/2) from the backbone's own rotary embedding."""
    positions = torch.arange(max_context)[None]
    with torch.no_grad():
        cos, sin = backbone.model.rotary_emb(torch.zeros(1, dtype=torch.float32), positions)
    half, padded_half = shape.head_dim // 2, shape.kv_head_dim // 2
    cos_cache = np.ones((max_context, padded_half), np.float32)
    sin_cache = np.zeros((max_context, padded_half), np.float32)
    cos_cache[:, :half] = _np(cos[0, :, :half])
    sin_cache[:, :half] = _np(sin[0, :, :half])
    return cos_cache, sin_cache


def decoder_graph(name: str, backbone, layers, sources, shape: Shape, rotary) -> onnx.ModelProto:
    """A run of decoder layers with their KV caches: hidden -> hidden, past_* -> present_*.

    `sources` are the backbone layer indices whose attention window each layer takes.
    """
    config = backbone.config
    g = Graph(name)
    hidden = config.hidden_size
    pd = shape.kv_head_dim
    x = g.input(HIDDEN, TensorProto.FLOAT, ["batch", "sequence", hidden])
    g.input(SEQLENS, TensorProto.INT32, ["batch"])
    g.input(TOTAL, TensorProto.INT32, [])
    cos = g.const("cos_cache", rotary[0])
    sin = g.const("sin_cache", rotary[1])
    eps = float(config.rms_norm_eps)

    def pad_out(heads):
        return lambda w, b: (pad_heads(shape, heads, 1, w), pad_heads(shape, heads, 0, b))

    def pad_in(w, b):
        return pad_heads(shape, shape.num_heads, 0, w), b

    pending = None  # the MLP output of the previous layer, still to be added to the residual x
    for i, (layer, src) in enumerate(zip(layers, sources)):
        p = f"layers.{i}"
        norm_in = g.const(f"{p}.input_layernorm.weight", _np(layer.input_layernorm.weight))
        if pending is None:
            h = g.op("SimplifiedLayerNormalization", [x, norm_in], 1, axis=-1, epsilon=eps, stash_type=1)
        else:
            h, x = g.skip_norm(pending, x, norm_in, eps)
        attn = layer.self_attn
        qkv = g.packed_linear(h, f"{p}.qkv_proj", [
            (attn.q_proj, pad_out(shape.num_heads)), (attn.k_proj, pad_out(shape.kv_heads)), (attn.v_proj, pad_out(shape.kv_heads))])
        past_k, past_v, present_k, present_v = component_kv(i)
        for n in (past_k, past_v):
            g.input(n, TensorProto.FLOAT, ["batch", shape.kv_heads, "past_sequence", pd])
        for n in (present_k, present_v):
            g.output(n, TensorProto.FLOAT, ["batch", shape.kv_heads, "present_sequence", pd])
        window = sliding_window(config, src)
        a, _, _ = g.op(
            "GroupQueryAttention", [qkv, "", "", past_k, past_v, SEQLENS, TOTAL, cos, sin],
            [f"{p}.attn", present_k, present_v], domain="com.microsoft",
            num_heads=shape.num_heads, kv_num_heads=shape.kv_heads, scale=float(attn.scaling),
            do_rotary=1, rotary_interleaved=0, local_window_size=-1 if window is None else int(window),
        )
        o = g.linear(a, f"{p}.o_proj", attn.o_proj, pad_in)
        norm_post = g.const(f"{p}.post_attention_layernorm.weight", _np(layer.post_attention_layernorm.weight))
        h, x = g.skip_norm(o, x, norm_post, eps)
        mlp = layer.mlp
        gate_up = g.packed_linear(h, f"{p}.mlp.gate_up_proj", [(mlp.gate_proj, None), (mlp.up_proj, None)])
        gate, up = g.op("Split", [gate_up], 2, axis=-1, num_outputs=2)
        act = g.op("Mul", [gate, g.op("Sigmoid", [gate])])
        pending = g.linear(g.op("Mul", [act, up]), f"{p}.mlp.down_proj", mlp.down_proj)
    g.op("Add", [pending, x], [HIDDEN_OUT])
    g.output(HIDDEN_OUT, TensorProto.FLOAT, ["batch", "sequence", hidden])
    return g.model()


def embedding_graph(backbone) -> onnx.ModelProto:
    g = Graph("embedding")
    ids = g.input(INPUT_IDS, TensorProto.INT64, ["batch", "sequence"])
    table = g.const("embed_tokens.weight", _np(backbone.model.embed_tokens.weight))
    g.op("Gather", [table, ids], [HIDDEN], axis=0)
    g.output(HIDDEN, TensorProto.FLOAT, ["batch", "sequence", backbone.config.hidden_size])
    return g.model()


def head_graph(backbone) -> onnx.ModelProto:
    """Final RMSNorm and LM head: hidden -> logits."""
    g = Graph("head")
    x = g.input(HIDDEN, TensorProto.FLOAT, ["batch", "sequence", backbone.config.hidden_size])
    norm = g.const("norm.weight", _np(backbone.model.norm.weight))
    h = g.op("SimplifiedLayerNormalization", [x, norm], 1, axis=-1, epsilon=float(backbone.config.rms_norm_eps), stash_type=1)
    g.linear(h, "lm_head", backbone.lm_head, out=LOGITS)
    g.output(LOGITS, TensorProto.FLOAT, ["batch", "sequence", backbone.config.vocab_size])
    return g.model()


def gate_graph(name: str, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> onnx.ModelProto:
    """Gate logits for one block from its RMS-normalised input: hidden -> (batch, sequence, 1 + experts),
    backbone first."""
    g = Graph(name)
    x = g.input(HIDDEN, TensorProto.FLOAT, ["batch", "sequence", weight.shape[1]])
    ones = g.const("gate.norm", np.ones(weight.shape[1], np.float32))
    x = g.op("SimplifiedLayerNormalization", [x, ones], 1, axis=-1, epsilon=eps, stash_type=1)
    y = g.op("MatMul", [x, g.const("gate.weight", _np(weight).T)])
    g.op("Add", [y, g.const("gate.bias", _np(bias))], [GATE_LOGITS])
    g.output(GATE_LOGITS, TensorProto.FLOAT, ["batch", "sequence", weight.shape[0]])
    return g.model()
