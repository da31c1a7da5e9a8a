"""PyTorch eager fp32: transformers' AutoModelForCausalLM and generate() on the HF directory."""

import harness


def load(args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)  # an app holds its tokenizer: its memory counts

    def generate(prompt_ids, n, on_token):
        ids = torch.tensor([prompt_ids])
        with torch.inference_mode():
            # min_new_tokens masks EOS so exactly n tokens come out
            model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                           min_new_tokens=n, pad_token_id=model.config.pad_token_id,
                           streamer=harness.HFStreamer(on_token))

    generate.tokenizer = tokenizer
    return generate


def score(args):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()

    def logits_of(ids):
        with torch.inference_mode():  # one forward pass over all positions
            return model(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long)).logits[0].numpy()

    return logits_of


if __name__ == "__main__":
    harness.main(load, ["torch", "transformers"], score=score)
