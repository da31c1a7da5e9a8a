"""One decoder graph for an active domain set, composed from a bundle's component graphs.

    x_0 = embedding(input_ids)                    (or the runtime's own rows, fed as inputs_embeds)
    x_{b+1} = backbone_b(x_b) + sum_d a_d (expert_{d,b}(x_b) - x_b),   a = softmax(gate_b(x_b)[backbone, S])
    logits = head(x_B)                            (runtime: only the last logits_to_keep positions)

Inputs and outputs follow onnxruntime-genai's decoder conventions (bundle/names.py): attention_mask
gives GroupQueryAttention's seqlens_k and total_sequence_length inside the graph, and every layer
that runs, expert layers included, has its past_key_values.N / present.N pair. Weights stay where
the bundle stores them: the composed graph's initializers point into the components' external-data
files, so it is a small protobuf and adds no weight bytes. A trace variant, composed only when
traces are asked for, also outputs every block's gate weights and the final hidden state.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from edgemode.bundle import names
from edgemode.bundle.manifest import BundleError, Manifest, resolve
from edgemode.domains import DomainSet
from edgemode.kv import FP32, KVType
from edgemode.runtime import kv_scales

INT64_MAX = 2**63 - 1


def _protobuf_classes():
    """onnx's protobuf module alone. `import onnx` costs 16.6 MB of resident memory (its operator
    schemas and checker), 7% of a SmolLM2 process, and composing needs only the message classes
    (2.4 MB). Registered under its own name, so a later `import onnx` reuses it."""
    if "onnx" in sys.modules:
        from onnx import onnx_ml_pb2

        return onnx_ml_pb2
    if "onnx.onnx_ml_pb2" not in sys.modules:
        package = importlib.util.find_spec("onnx")
        if package is None:
            raise ImportError("edgemode's runtime needs the onnx package (pip install onnx)")
        spec = importlib.util.spec_from_file_location(
            "onnx.onnx_ml_pb2", Path(package.submodule_search_locations[0]) / "onnx_ml_pb2.py")
        sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules["onnx.onnx_ml_pb2"]


P = _protobuf_classes()
TensorProto = P.TensorProto


def _value_info(name: str, dtype: int, shape: list) -> "P.ValueInfoProto":
    dims = [P.TensorShapeProto.Dimension(dim_param=d) if isinstance(d, str) else P.TensorShapeProto.Dimension(dim_value=d)
            for d in shape]
    tensor = P.TypeProto.Tensor(elem_type=dtype, shape=P.TensorShapeProto(dim=dims))
    return P.ValueInfoProto(name=name, type=P.TypeProto(tensor_type=tensor))


def _node(op_type: str, inputs: list[str], outputs: list[str], name: str, **attrs: int) -> "P.NodeProto":
    """A node whose attributes are all integers (all the composer needs)."""
    attributes = [P.AttributeProto(name=k, type=P.AttributeProto.INT, i=v) for k, v in attrs.items()]
    return P.NodeProto(op_type=op_type, input=inputs, output=outputs, name=name, attribute=attributes)


class _Composed:
    """The composed graph under construction."""

    def __init__(self, bundle: Path, manifest: Manifest):
        self.bundle, self.manifest = bundle, manifest
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []
        self.opsets: dict[str, int] = {}
        self._constants = 0

    def const(self, values: int | list[int]) -> str:
        """An int64 constant: a scalar, or a 1-D tensor from a list."""
        name = f"const.{self._constants}"
        self._constants += 1
        dims = [len(values)] if isinstance(values, list) else []
        values = values if isinstance(values, list) else [values]
        self.initializers.append(P.TensorProto(name=name, data_type=TensorProto.INT64, dims=dims, int64_data=values))
        return name

    def op(self, op_type: str, inputs: list[str], output: str, **attrs: int) -> str:
        self.nodes.append(_node(op_type, inputs, [output], output, **attrs))
        return output

    def add(self, file: str, connect: dict[str, str], expect: dict[str, int | None], first: bool = False) -> list:
        """Add component graph `file`, its names prefixed, with the inputs and outputs in `connect`
        wired to names of the composed graph, and return its nodes. `expect` maps names the component
        must have to the width of their last axis (None: any). `first` puts its nodes at the front."""
        path = resolve(self.bundle, file)
        try:
            graph = P.ModelProto.FromString(path.read_bytes())
        except Exception as e:  # protobuf's DecodeError and friends
            raise BundleError(f"{file} is not a readable ONNX graph: {e}") from None
        ends = {v.name: v for v in [*graph.graph.input, *graph.graph.output]}
        for name, width in expect.items():
            dims = ends[name].type.tensor_type.shape.dim if name in ends else None
            if dims is None or (width is not None and (not dims or dims[-1].dim_value != width)):
                raise BundleError(f"{file} is not the graph this bundle's manifest says it is")
        prefix = names.component(file) + "/"
        rename = lambda n: connect.get(n, prefix + n) if n else n  # noqa: E731 - "" is an omitted input
        for node in graph.graph.node:
            node.name = prefix + node.name
            node.input[:] = [rename(n) for n in node.input]
            node.output[:] = [rename(n) for n in node.output]
        if first:
            self.nodes[0:0] = graph.graph.node
        else:
            self.nodes += graph.graph.node
        for tensor in graph.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location" and entry.value not in self.manifest.files:
                    raise BundleError(f"{file} points at {entry.value!r}, which is not a file of this bundle")
            tensor.name = prefix + tensor.name
            self.initializers.append(tensor)
        for opset in graph.opset_import:
            self.opsets[opset.domain] = max(self.opsets.get(opset.domain, 0), opset.version)
        return list(graph.graph.node)

    def model(self, name: str) -> "P.ModelProto":
        graph = P.GraphProto(name=name, node=self.nodes, input=self.inputs, output=self.outputs, initializer=self.initializers)
        opsets = [P.OperatorSetIdProto(domain=d, version=v) for d, v in sorted(self.opsets.items())]
        return P.ModelProto(ir_version=10, producer_name="edgemode", graph=graph, opset_import=opsets)


def compose(bundle: Path, manifest: Manifest, domains: DomainSet, with_embedding: bool, trace: bool = False,
            kv: KVType = FP32) -> "P.ModelProto":
    """The decoder of `domains` (from manifest.domain_set). `with_embedding` takes input_ids
    (genai's bindings); without it the graph takes inputs_embeds and logits_to_keep (edgemode's
    runtime, which reads embedding rows from disk and wants logits for the last positions only).
    `trace` adds two outputs for the positions whose logits it gives: every block's gate weights
    and the final hidden state (bundle/names.py: GATE_WEIGHTS, FINAL_HIDDEN). `kv`: the type of
    every layer's cache (a quantized one reads the bundle's scales, runtime/kv_scales.py)."""
    backbone, layout, graphs = manifest.backbone, manifest.layout, manifest.graphs
    hidden, vocab = backbone.hidden_size, backbone.vocab_size
    kv_shape = lambda length: ["batch", backbone.kv_heads, length, kv.stored_dim(backbone.kv_head_dim)]  # noqa: E731
    kv_element = {"float32": TensorProto.FLOAT, "int8": TensorProto.INT8, "uint8": TensorProto.UINT8}[kv.element]
    absmax = kv_scales.read(bundle, manifest) if kv.quantized else None
    c = _Composed(bundle, manifest)
    mask = names.ATTENTION_MASK
    if with_embedding:
        c.inputs.append(_value_info(names.INPUT_IDS, TensorProto.INT64, ["batch", "sequence_length"]))
        c.add(graphs.embedding, {names.INPUT_IDS: names.INPUT_IDS, names.HIDDEN: "x.0"},
              {names.INPUT_IDS: None, names.HIDDEN: hidden})
    else:
        c.inputs.append(_value_info(names.INPUTS_EMBEDS, TensorProto.FLOAT, ["batch", "sequence_length", hidden]))
        c.op("Identity", [names.INPUTS_EMBEDS], "x.0")
    c.inputs.append(_value_info(mask, TensorProto.INT64, ["batch", "total_sequence_length"]))

    # GroupQueryAttention's lengths from the attention mask, as genai's model builder derives them.
    kept = c.op("ReduceSum", [mask, c.const([1])], "attention.kept", keepdims=0)
    c.op("Cast", [c.op("Sub", [kept, c.const(1)], "attention.kept_minus_one")], names.SEQLENS, to=TensorProto.INT32)
    total = c.op("Gather", [c.op("Shape", [mask], "attention.mask_shape"), c.const(1)], "attention.total", axis=0)
    c.op("Cast", [total], names.TOTAL, to=TensorProto.INT32)

    def add_decoder(file: str, first_kv: int, layers: int, x_in: str, out: str) -> None:
        connect = {names.HIDDEN: x_in, names.HIDDEN_OUT: out, names.SEQLENS: names.SEQLENS, names.TOTAL: names.TOTAL}
        for i in range(layers):
            composed = names.composed_kv(first_kv + i)
            connect.update(zip(names.component_kv(i), composed))
            c.inputs += [_value_info(n, kv_element, kv_shape("past_sequence_length")) for n in composed[:2]]
            c.outputs += [_value_info(n, kv_element, kv_shape("total_sequence_length")) for n in composed[2:]]
        nodes = c.add(file, connect, {names.HIDDEN: hidden, names.SEQLENS: None, names.TOTAL: None,
                                      names.component_kv(layers - 1)[0]: backbone.kv_head_dim, names.HIDDEN_OUT: hidden})
        if kv.quantized:
            c.initializers += kv_scales.quantize_attention(nodes, names.component(file), kv, absmax, P)

    blocks, first_expert_kv = layout.blocks, backbone.num_layers
    for b, block in enumerate(blocks):
        x_in, y = f"x.{b}", f"x.{b + 1}"
        add_decoder(graphs.backbone[b], block[0], len(block), x_in, f"backbone.{b}.out" if domains else y)
        if not domains:
            continue
        k = len(layout.expert_sources[b])
        for i, d in enumerate(domains):  # expert KV after the backbone's, block by block
            add_decoder(graphs.experts[d][b], first_expert_kv + (b * len(domains) + i) * k, k, x_in, f"expert.{d}.{b}.out")
        columns = domains.columns
        logits = f"gate.{b}.logits"
        c.add(graphs.gates[b], {names.HIDDEN: x_in, names.GATE_LOGITS: logits},
              {names.HIDDEN: hidden, names.GATE_LOGITS: 1 + len(manifest.domains)})
        weights = c.op("Softmax", [c.op("Gather", [logits, c.const(columns)], f"gate.{b}.active", axis=-1)],
                       f"gate.{b}.weights", axis=-1)
        parts = [f"gate.{b}.weight.{j}" for j in range(len(columns))]  # the backbone's weight is 1 - the rest's
        c.nodes.append(_node("Split", [weights], parts, f"gate.{b}.split", axis=-1, num_outputs=len(parts)))
        changes = [c.op("Mul", [w, c.op("Sub", [f"expert.{d}.{b}.out", x_in], f"expert.{d}.{b}.change")], f"gate.{b}.mixed.{d}")
                   for w, d in zip(parts[1:], domains)]
        c.op("Sum", [f"backbone.{b}.out", *changes], y)

    x = f"x.{len(blocks)}"
    if trace:
        if domains:  # (batch, sequence, blocks, 1 + active)
            rows = [c.op("Unsqueeze", [f"gate.{b}.weights", c.const([2])], f"trace.gate.{b}") for b in range(len(blocks))]
            gates = c.op("Concat", rows, "trace.gates", axis=2)
        else:  # the backbone alone: its weight is 1 in every block
            batch_sequence = c.op("Slice", [c.op("Shape", [x], "trace.shape"), c.const([0]), c.const([2])], "trace.batch_sequence")
            dims = c.op("Concat", [batch_sequence, c.const([len(blocks), 1])], "trace.gates_shape", axis=0)
            gates = c.op("Expand", [c.op("Cast", [c.const(1)], "trace.one", to=TensorProto.FLOAT), dims], "trace.gates")
    shape = ["batch", "sequence_length", vocab]
    if not with_embedding:
        keep = names.LOGITS_TO_KEEP
        c.inputs.append(_value_info(keep, TensorProto.INT64, [1]))
        first = c.op("Neg", [keep], "head.first")
        x = c.op("Slice", [x, first, c.const([INT64_MAX]), c.const([1])], "head.kept")
        if trace:
            gates = c.op("Slice", [gates, first, c.const([INT64_MAX]), c.const([1])], "trace.gates_kept")
        shape[1] = "logits_to_keep"
    # The head's nodes go first in the list (onnxruntime sorts the graph itself): onnxruntime
    # prepacks weights in list order, and the head's 8-bit packing needs a temporary buffer of the
    # head's size. Packed first, that buffer comes and goes before the decoder's weights are
    # resident (measured on SmolLM2 int4: peak RSS at load 252 -> 222 MB, 262 -> 234 with experts).
    head = c.add(graphs.head, {names.HIDDEN: x, names.LOGITS: names.LOGITS}, {names.HIDDEN: hidden, names.LOGITS: vocab},
                 first=True)
    c.outputs.insert(0, _value_info(names.LOGITS, TensorProto.FLOAT, shape))
    if trace:
        norm = [n for n in head if n.op_type == "SimplifiedLayerNormalization" and list(n.input[:1]) == [x]]
        if len(norm) != 1:
            raise BundleError(f"{graphs.head} does not start with the final norm; this bundle cannot be traced")
        c.op("Identity", [gates], names.GATE_WEIGHTS)
        c.op("Identity", [norm[0].output[0]], names.FINAL_HIDDEN)
        c.outputs += [_value_info(names.GATE_WEIGHTS, TensorProto.FLOAT, [*shape[:2], len(blocks), 1 + len(domains)]),
                      _value_info(names.FINAL_HIDDEN, TensorProto.FLOAT, [*shape[:2], hidden])]
    return c.model(names.component(names.composed_file(domains)))
