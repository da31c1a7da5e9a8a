"""edgemode: a bundle through the project's runtime (runs in the project venv)."""

import harness


def load(args):
    from edgemode.runtime.engine import Engine

    domains = [d for d in args.domains.split(",") if d]
    engine = Engine.load(args.model, domains, threads=args.threads)
    engine.eos_token_ids = set()  # never stop early: every engine makes exactly n tokens

    def generate(prompt_ids, n, on_token):
        for token in engine.generate_ids(prompt_ids, n):
            on_token(int(token))

    return generate


def score(args):
    from edgemode.runtime.engine import Engine

    engine = Engine.load(args.model, [d for d in args.domains.split(",") if d], threads=args.threads)
    return lambda ids: engine.logits(ids, chunk=len(ids))  # one chunk: every position in one session run


if __name__ == "__main__":
    harness.main(load, ["edgemode", "onnxruntime"],
                 lambda p: p.add_argument("--domains", default="", help="comma-separated; empty: backbone only"),
                 score)
