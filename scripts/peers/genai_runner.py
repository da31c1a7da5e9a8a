"""onnxruntime-genai: the model builder's int4 CPU model through og.Generator."""

import json

import harness


def _model(args):
    import onnxruntime_genai as og

    config = og.Config(args.model)
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": args.threads}}}}))
    return og.Model(config)


def load(args):
    import onnxruntime_genai as og

    model = _model(args)
    tokenizer = og.Tokenizer(model)  # an app holds its tokenizer: its memory counts, as edgemode's does

    def generate(prompt_ids, n, on_token):
        params = og.GeneratorParams(model)
        # max_length caps the KV buffer to prompt + new tokens; min_length masks EOS until then
        length = len(prompt_ids) + n
        params.set_search_options(max_length=length, min_length=length, do_sample=False)
        generator = og.Generator(model, params)
        generator.append_tokens(prompt_ids)
        while not generator.is_done():
            generator.generate_next_token()
            on_token(int(generator.get_next_tokens()[0]))

    generate.tokenizer = tokenizer
    return generate


def score(args):
    import onnxruntime_genai as og

    model = _model(args)

    def logits_of(ids):
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + 1, do_sample=False)
        generator = og.Generator(model, params)
        generator.append_tokens(ids)  # one prefill run; its "logits" output holds every position: (1, len(ids), vocab)
        logits = generator.get_output("logits")
        return logits.reshape(logits.shape[-2], logits.shape[-1])

    return logits_of


if __name__ == "__main__":
    harness.main(load, ["onnxruntime-genai", "onnxruntime"], score=score)
