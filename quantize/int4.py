"""Weight-only int4 quantization with onnxruntime's MatMulNBitsQuantizer.

MatMul weights become MatMulNBits and embedding Gathers become GatherBlockQuantized: block-wise,
symmetric, with accuracy_level=4 (int8 activations in the kernel) by default, which is what makes
int4 fast on CPU.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import onnx
from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer


@dataclass(frozen=True)
class Int4Config:
    block_size: int = 32
    accuracy_level: int = 4
    symmetric: bool = True

    def to_json(self) -> dict:
        return {"weights": "int4", **asdict(self)}


def quantize_int4(model: onnx.ModelProto, config: Int4Config = Int4Config()) -> onnx.ModelProto:
    algo = DefaultWeightOnlyQuantConfig(
        block_size=config.block_size,
        is_symmetric=config.symmetric,
        accuracy_level=config.accuracy_level,
        op_types_to_quantize=("MatMul", "Gather"),
        quant_axes=(("MatMul", 0), ("Gather", 1)),
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
    return quantizer.model.model
