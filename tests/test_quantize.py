"""int4 quantization: the block-mean correction for weights already on a 4-bit grid, and 8-bit Gathers."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgemode.quantize import Int4Config, int4, quantize_int4

K, N, BLOCK = 128, 96, 32


def matmul_model(weight: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", weight.shape[1]])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model


def run(model: onnx.ModelProto, **inputs) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


def q4_1_grid(seed: int = 0, k: int = K, n: int = N) -> np.ndarray:
    """Weights as a GGUF Q4_1 file holds them: w = d * q + m per block of 32 along K, d and m fp16."""
    rng = np.random.default_rng(seed)
    blocks = rng.standard_normal((n, k // BLOCK, BLOCK)).astype(np.float32) * 0.05
    low, high = blocks.min(-1, keepdims=True), blocks.max(-1, keepdims=True)
    d, m = ((high - low) / 15).astype(np.float16).astype(np.float32), low.astype(np.float16).astype(np.float32)
    q = np.clip(np.round((blocks - m) / d), 0, 15)
    return np.ascontiguousarray((d * q + m).reshape(n, k).T)


def relative_error(model, weight, x):
    return np.linalg.norm(run(model, x=x) - x @ weight) / np.linalg.norm(x @ weight)


@pytest.mark.parametrize("symmetric", [True, False])
def test_dequantize_reads_back_what_matmulnbits_computes(symmetric):
    weight = np.random.default_rng(1).standard_normal((K, N)).astype(np.float32)
    model = quantize_int4(matmul_model(weight), Int4Config(accuracy_level=0, symmetric=symmetric))
    node = next(n for n in model.graph.node if n.op_type == "MatMulNBits")
    dequantized = int4.dequantize(node, {i.name: i for i in model.graph.initializer})
    x = np.random.default_rng(2).standard_normal((1, 3, K)).astype(np.float32)
    assert np.abs(run(model, x=x) - x @ dequantized).max() <= 1e-4 * np.abs(x @ dequantized).max()


def test_weights_on_a_q4_1_grid_are_corrected_to_near_exact(monkeypatch):
    weight = q4_1_grid()
    x = np.random.default_rng(3).standard_normal((2, 5, K)).astype(np.float32)
    corrected = quantize_int4(matmul_model(weight))
    assert [n.op_type for n in corrected.graph.node] == ["AveragePool", "Concat", "MatMulNBits"]
    assert corrected_k(corrected) == K + K // BLOCK  # the block means ride along as extra rows
    monkeypatch.setattr(int4, "CORRECTION_MIN_GAIN", 2.0)  # never correct
    plain = quantize_int4(matmul_model(weight))
    assert [n.op_type for n in plain.graph.node] == ["MatMulNBits"]
    # Measured: 0.006 corrected (4-bit corrections, int8 activations of accuracy_level 4), 0.08 plain.
    assert relative_error(corrected, weight, x) < 0.01 < relative_error(plain, weight, x)


def corrected_k(model: onnx.ModelProto) -> int:
    node = next(n for n in model.graph.node if n.op_type == "MatMulNBits")
    return next(helper.get_attribute_value(a) for a in node.attribute if a.name == "K")


@pytest.mark.parametrize("k", [BLOCK * 3, BLOCK * BLOCK * 2])  # an odd block count; corrections over two blocks
def test_corrections_fold_into_any_block_count(k):
    weight = q4_1_grid(6, k=k)
    model = quantize_int4(matmul_model(weight))
    assert corrected_k(model) == k + k // BLOCK
    x = np.random.default_rng(7).standard_normal((1, 2, k)).astype(np.float32)
    assert relative_error(model, weight, x) < 0.01


def test_random_weights_are_not_corrected():
    weight = np.random.default_rng(4).standard_normal((K, N)).astype(np.float32)
    model = quantize_int4(matmul_model(weight))
    assert [n.op_type for n in model.graph.node] == ["MatMulNBits"]


def test_8bit_embedding_gathers_rows_within_half_a_step():
    table = np.random.default_rng(5).standard_normal((300, 64)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["rows"], name="embed", axis=0)], "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["batch", "sequence", 64])],
        [numpy_helper.from_array(table, "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    quantized = quantize_int4(model, bits=8)
    assert [n.op_type for n in quantized.graph.node] == ["GatherBlockQuantized"]
    ids = np.array([[0, 7, 299, 7]], np.int64)
    step = (table.max() - table.min()) / 255
    assert np.abs(run(quantized, ids=ids) - table[ids]).max() <= step / 2 + 1e-6


@pytest.mark.parametrize("symmetric", [True, False])
def test_correction_rows_are_what_matmulnbits_computes(monkeypatch, symmetric):
    monkeypatch.setattr(int4, "CORRECTION_MIN_GAIN", -np.inf)  # correct every weight, on either grid
    weight = np.random.default_rng(8).standard_normal((K, N)).astype(np.float32)
    model = quantize_int4(matmul_model(weight), Int4Config(accuracy_level=0, symmetric=symmetric))
    assert corrected_k(model) == K + K // BLOCK
    node = next(n for n in model.graph.node if n.op_type == "MatMulNBits")
    extended = int4.dequantize(node, {i.name: i for i in model.graph.initializer})  # (K + K / BLOCK, N)
    x = np.random.default_rng(9).standard_normal((1, 3, K)).astype(np.float32)
    x_and_means = np.concatenate([x, x.reshape(1, 3, K // BLOCK, BLOCK).mean(-1)], axis=-1)
    assert np.abs(run(model, x=x) - x_and_means @ extended).max() <= 1e-4 * np.abs(x_and_means @ extended).max()
