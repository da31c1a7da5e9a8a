"""optimum: ORTModelForCausalLM (fp32 ONNX with past KV) and transformers' generate()."""

import harness


def load(args):
    import onnxruntime as ort
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    torch.set_num_threads(args.threads)  # generate()'s logits processing runs in torch
    model = ORTModelForCausalLM.from_pretrained(args.model, session_options=options, provider="CPUExecutionProvider")

    def generate(prompt_ids, n, on_token):
        ids = torch.tensor([prompt_ids])
        # min_new_tokens masks EOS so exactly n tokens come out
        model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                       min_new_tokens=n, pad_token_id=model.config.pad_token_id,
                       streamer=harness.HFStreamer(on_token))

    return generate


if __name__ == "__main__":
    harness.main(load, ["onnxruntime", "optimum-onnx", "transformers"])
