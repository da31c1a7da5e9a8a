"""Runs inside onnxruntime-genai's own virtualenv (never edgemode's): reads a JSON list of requests
on stdin, answers each with og.Model / og.Tokenizer on the folder argv[1], prints a JSON list.

A request: {"overlay": genai config overlay or null, "texts": [...] to tokenize and decode back,
"prompt_ids" or "prompt_text", "new_tokens": n, "exact": true to make exactly n tokens (EOS masked)}.
"""

import json
import sys

import numpy as np
import onnxruntime_genai as og


def answer(folder: str, request: dict) -> dict:
    config = og.Config(folder)
    if request.get("overlay"):
        config.overlay(request["overlay"])
    model = og.Model(config)
    result = {}
    tokenizer = None
    if "texts" in request or "prompt_text" in request:
        tokenizer = og.Tokenizer(model)
        tokenizer.update_options(add_special_tokens="true")  # as the bundle's tokenizer: BOS first
    if "texts" in request:
        result["ids"] = [tokenizer.encode(text).tolist() for text in request["texts"]]
        result["decoded"] = [tokenizer.decode(np.array(ids, np.int32)) for ids in result["ids"]]
    prompt = request.get("prompt_ids") or (tokenizer.encode(request["prompt_text"]).tolist() if "prompt_text" in request else None)
    if prompt:
        params = og.GeneratorParams(model)
        longest = len(prompt) + request["new_tokens"]
        params.set_search_options(do_sample=False, max_length=longest, min_length=longest if request.get("exact") else 0)
        generator = og.Generator(model, params)
        generator.append_tokens(np.array(prompt, np.int32))
        tokens = []
        while not generator.is_done():
            generator.generate_next_token()
            tokens.append(int(generator.get_next_tokens()[0]))
        result["prompt_ids"], result["tokens"] = prompt, tokens
        if tokenizer:
            result["text"] = tokenizer.decode(np.array(tokens, np.int32))
    return result


if __name__ == "__main__":
    print(json.dumps([answer(sys.argv[1], request) for request in json.load(sys.stdin)]))
