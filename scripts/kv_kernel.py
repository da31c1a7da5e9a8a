"""onnxruntime's GroupQueryAttention alone, per KV cache type: where a quantized cache's time goes.

One GroupQueryAttention node with SmolLM2-135M's heads (9 query, 3 KV, 64 channels), a cache of
--context positions shared between past and present as the engine binds it, --past positions
already in it; timed for a prefill chunk (--chunk query tokens) and a decode step (1 token), with
an fp32 cache and with 8- and 4-bit caches (PER_CHANNEL as edgemode composes them, and PER_TENSOR).
Every type runs in this one process, one after the other; only the ratios to fp32 mean anything.

    python scripts/kv_kernel.py [--context 4096] [--past 3840] [--chunk 256] [--threads 1,2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

HEADS, KV_HEADS, HEAD = 9, 3, 64
TYPES = {"fp32": (0, "NONE"), "int8 per channel": (8, "PER_CHANNEL"), "int8 per tensor": (8, "PER_TENSOR"),
         "int4 per channel": (4, "PER_CHANNEL")}
NUMPY = {TensorProto.FLOAT: np.float32, TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8}


def attention(bits: int, quant: str, context: int) -> tuple[bytes, int, int]:
    """The one-node model, its cache element type and stored head size."""
    cache = {0: TensorProto.FLOAT, 8: TensorProto.INT8, 4: TensorProto.UINT8}[bits]
    stored = HEAD // 2 if bits == 4 else HEAD
    inputs, scales, attrs = ["q", "k", "v", "past_k", "past_v", "seqlens_k", "total"], [], {}
    if bits:
        shape = [1, KV_HEADS, 1, HEAD] if quant == "PER_CHANNEL" else [1]
        scales = [helper.make_tensor(n, TensorProto.FLOAT, shape, np.full(int(np.prod(shape)), 0.05, np.float32))
                  for n in ("k_scale", "v_scale")]
        inputs += [""] * 5 + ["k_scale", "v_scale"]
        attrs = dict(kv_cache_bit_width=bits, k_quant_type=quant, v_quant_type=quant)
    node = helper.make_node("GroupQueryAttention", inputs, ["out", "present_k", "present_v"], domain="com.microsoft",
                            num_heads=HEADS, kv_num_heads=KV_HEADS, **attrs)
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [node], "attention",
        [value("q", TensorProto.FLOAT, [1, "s", HEADS * HEAD]), value("k", TensorProto.FLOAT, [1, "s", KV_HEADS * HEAD]),
         value("v", TensorProto.FLOAT, [1, "s", KV_HEADS * HEAD]),
         value("past_k", cache, [1, KV_HEADS, context, stored]), value("past_v", cache, [1, KV_HEADS, context, stored]),
         value("seqlens_k", TensorProto.INT32, [1]), value("total", TensorProto.INT32, [1])],
        [value("out", TensorProto.FLOAT, None), value("present_k", cache, None), value("present_v", cache, None)], scales)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    return model.SerializeToString(), cache, stored


def milliseconds(bits: int, quant: str, args, queries: int, threads: int) -> float:
    model, cache, stored = attention(bits, quant, args.context)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    binding = session.io_binding()
    x = np.random.default_rng(0).standard_normal((1, queries, HEADS * HEAD), np.float32)
    binding.bind_cpu_input("q", x)
    for name in ("k", "v"):
        binding.bind_cpu_input(name, np.ascontiguousarray(x[:, :, :KV_HEADS * HEAD]))
    for part in ("k", "v"):  # past and present share one buffer, as the engine binds them
        buffer = ort.OrtValue.ortvalue_from_numpy(np.zeros((1, KV_HEADS, args.context, stored), NUMPY[cache]))
        binding.bind_ortvalue_input(f"past_{part}", buffer)
        binding.bind_ortvalue_output(f"present_{part}", buffer)
    binding.bind_cpu_input("seqlens_k", np.array([args.past + queries - 1], np.int32))
    binding.bind_cpu_input("total", np.array([args.past + queries], np.int32))
    binding.bind_output("out")
    session.run_with_iobinding(binding)  # warm-up
    start = time.perf_counter()
    for _ in range(args.repeat):
        session.run_with_iobinding(binding)
    return (time.perf_counter() - start) / args.repeat * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--context", type=int, default=4096, help="cache positions")
    parser.add_argument("--past", type=int, default=3840, help="positions already in the cache")
    parser.add_argument("--chunk", type=int, default=256, help="query tokens of a prefill chunk")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not 0 <= args.past <= args.context - args.chunk:
        raise SystemExit(f"--past must leave room for a --chunk of {args.chunk} in --context {args.context}")
    print(f"GroupQueryAttention, onnxruntime {ort.__version__}: {args.past} positions in a {args.context}-position "
          f"cache, mean of {args.repeat} calls\n")
    print("| threads | query tokens | " + " | ".join(TYPES) + " |")
    print("|---|---|" + "---|" * len(TYPES))
    for threads in (int(t) for t in args.threads.split(",")):
        for queries in (args.chunk, 1):
            times = {name: milliseconds(bits, quant, args, queries, threads) for name, (bits, quant) in TYPES.items()}
            print(f"| {threads} | {queries} | " + " | ".join(
                f"{ms:.2f} ms ({ms / times['fp32']:.2f}x)" for ms in times.values()) + " |", flush=True)


if __name__ == "__main__":
    main()
