"""optimum: ORTModelForCausalLM (fp32 ONNX with past KV) and transformers' generate()."""

import harness


def _model(args):
    import onnxruntime as ort
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    torch.set_num_threads(args.threads)  # generate()'s logits processing runs in torch
    return ORTModelForCausalLM.from_pretrained(args.model, session_options=options, provider="CPUExecutionProvider")


def load(args):
    import torch

    from transformers import AutoTokenizer

    model = _model(args)
    tokenizer = AutoTokenizer.from_pretrained(args.model)  # an app holds its tokenizer: its memory counts

    def generate(prompt_ids, n, on_token):
        ids = torch.tensor([prompt_ids])
        # min_new_tokens masks EOS so exactly n tokens come out
        model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                       min_new_tokens=n, pad_token_id=model.config.pad_token_id,
                       streamer=harness.HFStreamer(on_token))

    generate.tokenizer = tokenizer
    return generate


def score(args):
    import torch

    model = _model(args)

    def logits_of(ids):
        ids = torch.tensor([ids])
        with torch.inference_mode():  # one run of the decoder with an empty past: logits at every position
            return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].numpy()

    return logits_of


if __name__ == "__main__":
    harness.main(load, ["onnxruntime", "optimum-onnx", "transformers"], score=score)
