"""onnxruntime-genai: the model builder's int4 CPU model through og.Generator."""

import json

import harness


def load(args):
    import onnxruntime_genai as og

    config = og.Config(args.model)
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": args.threads}}}}))
    model = og.Model(config)

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

    return generate


if __name__ == "__main__":
    harness.main(load, ["onnxruntime-genai", "onnxruntime"])
