"""edgemode: a bundle through the project's runtime (runs in the project venv)."""

import harness


def load(args):
    from edgemode.runtime.engine import Engine

    domains = [d for d in args.domains.split(",") if d]
    engine = Engine.load(args.model, domains, threads=args.threads, kv=args.kv)
    engine.eos_token_ids = set()  # never stop early: every engine makes exactly n tokens

    def generate(prompt_ids, n, on_token):
        for token in engine.generate_ids(prompt_ids, n):
            on_token(int(token))

    return generate


def score(args):
    from edgemode.runtime.engine import Engine

    engine = Engine.load(args.model, [d for d in args.domains.split(",") if d], threads=args.threads, kv=args.kv)
    return lambda ids: engine.logits(ids, chunk=len(ids))  # one chunk: every position in one session run


if __name__ == "__main__":
    def options(parser):
        parser.add_argument("--domains", default="", help="comma-separated; empty: backbone only")
        parser.add_argument("--kv", default="fp32", help="KV cache type: fp32, int8 or int4")

    harness.main(load, ["edgemode", "onnxruntime"], options, score)
