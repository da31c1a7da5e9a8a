"""llama.cpp through llama-cpp-python on the Q4_1 GGUF the backbone was converted from."""

import itertools
import json

import harness


def load(args):
    from llama_cpp import Llama

    # KV cache sized to prompt + new tokens, as for onnxruntime-genai and edgemode
    context = len(json.loads(args.prompt.read_text())) + args.new_tokens
    llm = Llama(args.model, n_ctx=context, n_threads=args.threads, n_threads_batch=args.threads, verbose=False)

    def generate(prompt_ids, n, on_token):
        llm.reset()  # otherwise generate() reuses the previous run's KV cache and skips the prefill
        # temp=0 is greedy; generate() never stops by itself, so take n tokens
        for token in itertools.islice(llm.generate(prompt_ids, temp=0.0, repeat_penalty=1.0), n):
            on_token(int(token))

    return generate


def score(args):
    import numpy as np
    from llama_cpp import Llama

    texts = json.loads(args.score.read_text())
    longest = max(map(len, texts.values()))
    # logits_all keeps every position's logits; one batch of the whole text
    llm = Llama(args.model, n_ctx=longest, n_batch=longest, n_ubatch=longest, logits_all=True,
                n_threads=args.threads, n_threads_batch=args.threads, verbose=False)

    def logits_of(ids):
        llm.reset()
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)])

    return logits_of


if __name__ == "__main__":
    harness.main(load, ["llama-cpp-python"], score=score)
