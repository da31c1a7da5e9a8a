"""Weight-only int4 quantization with onnxruntime's MatMulNBitsQuantizer.

MatMul weights become MatMulNBits and embedding Gathers become GatherBlockQuantized: block-wise,
asymmetric, with accuracy_level=4 (int8 activations in the kernel) by default, which is what makes
int4 fast on CPU. The vocabulary matrices (embedding table and LM head), the largest ones and
those top-1 agreement is most sensitive to, are 8-bit by default (`vocab_bits`; measured on
SmolLM2: top-1 agreement with fp32 0.89 -> 0.95 with an 8-bit embedding). onnxruntime's quantizer
makes 4-bit GatherBlockQuantized only, so the 8-bit one is built here with its kernel's own
quantize_matmul_8bits.

Block-mean correction. Weights that already sit on a 4-bit grid (SmolLM2 ships only as a GGUF
Q4_1: w = d*q + m per block of 32) do not land on MatMulNBits' grid, whose zero point is an
integer: every block is off by a constant. We add that constant back, per block and output column,
as y += blocksum(x) @ C where C is the block mean of W - dequant(W), computed inside the same
MatMulNBits as extra rows of W (see _add_block_mean_corrections). It is applied only where it
removes at least half of a weight's quantization error (measured: almost all of it for SmolLM2, so
int4 matches fp32 within 0.5% perplexity); random weights don't qualify and stay plain MatMulNBits.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

from edgemode import EdgemodeError

CORRECTION_MIN_GAIN = 0.5  # correct a weight when that removes at least this share of its squared error


@dataclass(frozen=True)
class Int4Config:
    block_size: int = 32
    accuracy_level: int = 4
    symmetric: bool = False
    vocab_bits: int = 8

    def __post_init__(self):
        if not isinstance(self.block_size, int) or self.block_size < 16 or self.block_size & (self.block_size - 1):
            raise EdgemodeError(f"--block-size must be a power of 2 >= 16, got {self.block_size!r}")
        if self.accuracy_level not in (0, 1, 2, 3, 4):
            raise EdgemodeError(f"--accuracy-level must be 0-4, got {self.accuracy_level!r}")
        if self.vocab_bits not in (4, 8):
            raise EdgemodeError(f"vocab_bits must be 4 or 8, got {self.vocab_bits!r}")

    def to_json(self) -> dict:
        return {"weights": "int4", **asdict(self)}


def quantize_int4(model: onnx.ModelProto, config: Int4Config = Int4Config(), bits: int = 4) -> onnx.ModelProto:
    """Quantize `model`'s MatMul and Gather weights to `bits` (4, or 8 for the vocabulary matrices)."""
    if bits == 8:
        _quantize_gathers_8bit(model, config.block_size)
    weights = {i.name: i for i in model.graph.initializer}
    originals = {n.name: numpy_helper.to_array(weights[n.input[1]]) for n in model.graph.node
                 if n.op_type == "MatMul" and n.input[1] in weights}
    algo = DefaultWeightOnlyQuantConfig(
        block_size=config.block_size,
        is_symmetric=config.symmetric,
        accuracy_level=config.accuracy_level,
        op_types_to_quantize=("MatMul", "Gather") if bits == 4 else ("MatMul",),
        quant_axes=(("MatMul", 0), ("Gather", 1)),
        bits=bits,
    )
    quantizer = MatMulNBitsQuantizer(model, algo_config=algo)
    # The quantizer logs every node at INFO; keep the export's own progress readable.
    logger = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        quantizer.process()
    finally:
        logger.setLevel(level)
    model = quantizer.model.model
    _add_block_mean_corrections(model, originals)
    return model


def dequantize(node: onnx.NodeProto, initializers: dict) -> np.ndarray:
    """The (K, N) weight a MatMulNBits node computes with: (q - zero_point) * scale per block."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    k, n, bits, block = attrs["K"], attrs["N"], attrs["bits"], attrs["block_size"]
    packed = numpy_helper.to_array(initializers[node.input[1]])  # (N, blocks, block * bits / 8)
    blocks = packed.shape[1]
    q = _unpack(packed.reshape(n, -1), bits).reshape(n, blocks, block).astype(np.float32)
    scales = numpy_helper.to_array(initializers[node.input[2]]).reshape(n, blocks, 1)
    if len(node.input) > 3 and node.input[3]:
        zero = _unpack(numpy_helper.to_array(initializers[node.input[3]]).reshape(n, -1), bits)[:, :blocks, None]
    else:
        zero = 2 ** (bits - 1)
    return ((q - zero) * scales).reshape(n, blocks * block)[:, :k].T


def _unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    """uint8 rows holding 8/bits values each, lowest bits first."""
    if bits == 8:
        return packed
    return np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(packed.shape[0], -1)


def _add_block_mean_corrections(model: onnx.ModelProto, originals: dict) -> None:
    """Fold y += blocksum(x) @ C into the MatMulNBits itself: x gains its K / block block means as
    extra inputs and W gains block * C, quantized to 4 bits, as extra rows. One kernel instead of a second
    MatMul and an Add per weight (measured on SmolLM2: the unfused form cost 23% of decode speed)."""
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    extended = {}  # input name -> that input with its block means appended, shared by the MatMuls reading it
    nodes = []
    for node in graph.node:
        original = originals.get(node.name.removesuffix("_Q4").removesuffix("_Q8"))
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "MatMulNBits" or original is None or attrs["bits"] != 4 or attrs["K"] % attrs["block_size"]:
            nodes.append(node)
            continue
        k, block = attrs["K"], attrs["block_size"]
        residual = (original - dequantize(node, initializers)).reshape(k // block, block, -1)
        correction = residual.mean(axis=1)  # (K / block, N)
        remaining = residual - correction[:, None, :]
        if (remaining**2).sum() > (1 - CORRECTION_MIN_GAIN) * (residual**2).sum():
            nodes.append(node)
            continue
        x = node.input[0]
        if x not in extended:
            # Block means by a 1-D AveragePool over the hidden axis of (batch, sequence, hidden): one
            # node where Reshape + ReduceSum took two (measured on SmolLM2: decode +12%).
            means = helper.make_node("AveragePool", [x], [f"{node.name}.x_block_means"], kernel_shape=[block],
                                     strides=[block], name=f"{node.name}.x_block_means")
            joined = helper.make_node("Concat", [x, means.output[0]], [f"{node.name}.x_and_block_means"], axis=-1,
                                      name=f"{node.name}.x_and_block_means")
            nodes += [means, joined]
            extended[x] = joined.output[0]
        node.input[0] = extended[x]
        _append_rows(node, initializers, correction * block)  # blocksum(x) @ C = blockmean(x) @ (block * C)
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _append_rows(node: onnx.NodeProto, initializers: dict, rows: np.ndarray) -> None:
    """Extend a 4-bit MatMulNBits weight (K, N) whose K is a whole number of blocks by `rows`,
    quantized in blocks of their own by onnxruntime's quantize_matmul_4bits."""
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    k, n, block = attrs["K"], attrs["N"], attrs["block_size"]
    symmetric = len(node.input) < 4 or not node.input[3]  # no zero points: they are implicitly 8
    extra = -(-rows.shape[0] // block)
    padded = np.zeros((extra * block, n), np.float32)
    padded[: rows.shape[0]] = rows
    packed = np.zeros((n, extra, block // 2), np.uint8)
    scales = np.zeros((n, extra), np.float32)
    zero_points = np.zeros((n, (extra + 1) // 2), np.uint8)
    quantize_matmul_4bits(packed, padded, scales, zero_points, block, n, extra * block, symmetric)
    blocks = k // block
    old = {name: numpy_helper.to_array(initializers[name]) for name in node.input[1:] if name}
    joined = {
        node.input[1]: np.concatenate([old[node.input[1]].reshape(n, blocks, -1), packed], axis=1),
        node.input[2]: np.concatenate([old[node.input[2]].reshape(n, blocks), scales], axis=1),
    }
    if not symmetric:
        joined[node.input[3]] = _pack(np.concatenate([_unpack(old[node.input[3]].reshape(n, -1), 4)[:, :blocks],
                                                      _unpack(zero_points, 4)[:, :extra]], axis=1))
    for name, array in joined.items():
        initializers[name].CopyFrom(numpy_helper.from_array(array, name))
    for a in node.attribute:
        if a.name == "K":
            a.i = k + rows.shape[0]


def _pack(values: np.ndarray) -> np.ndarray:
    """4-bit values (rows, count) two to a byte, lowest bits first; an odd count pads with 0."""
    if values.shape[1] % 2:
        values = np.pad(values, ((0, 0), (0, 1)))
    return (values[:, 0::2] | (values[:, 1::2] << 4)).astype(np.uint8)


def _quantize_gathers_8bit(model: onnx.ModelProto, block_size: int) -> None:
    """Gather(table, ids) -> GatherBlockQuantized with 8-bit asymmetric blocks along the hidden axis."""
    from onnxruntime.capi._pybind_state import quantize_matmul_8bits

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    for i, node in enumerate(graph.node):
        if node.op_type != "Gather" or node.input[0] not in initializers:
            continue
        table = numpy_helper.to_array(initializers[node.input[0]])
        rows, hidden = table.shape
        if hidden % block_size:
            continue
        blocks = hidden // block_size
        packed = np.zeros((rows, blocks, block_size), np.uint8)
        scales = np.zeros((rows, blocks), np.float32)
        zero_points = np.zeros((rows, blocks), np.uint8)
        # It quantizes a (K, N) MatMul weight along K: the transposed table, blocks along hidden.
        quantize_matmul_8bits(packed, np.ascontiguousarray(table.T), scales, zero_points, block_size, rows, hidden, False)
        name = node.input[0]
        graph.initializer.remove(initializers[name])
        graph.initializer.extend([numpy_helper.from_array(packed.reshape(rows, hidden), f"{name}_Q8"),
                                  numpy_helper.from_array(scales, f"{name}_scales"),
                                  numpy_helper.from_array(zero_points, f"{name}_zero_points")])
        graph.node[i].CopyFrom(helper.make_node(
            "GatherBlockQuantized", [f"{name}_Q8", node.input[1], f"{name}_scales", f"{name}_zero_points"],
            list(node.output), name=f"{node.name}_Q8", domain="com.microsoft",
            gather_axis=0, quantize_axis=1, block_size=block_size, bits=8))
