"""Which experts helped on a text: the coalition game of a bundle's (or model's) experts.

The players are the requested domains; the value of a coalition S is the mean log-likelihood of the
text's tokens with exactly S active, v(S) = mean_t log p(x_t | x_<t, S), scored in the windows
`edgemode eval` uses (so -v(S) is eval's nll for S), and per token v_t(S) = log p(x_t | x_<t, S).
Every coalition is run once (2^n passes). Subset semantics make v exact: S active is the full model
with the other experts' gate logits at -inf, and S = {} is the backbone alone.

`explain` returns one JSON-ready dict: the values, Shapley values (whole text and per token) with
their efficiency, the Faith-Shap interactions, per-token gate weights (bundles: from the gate trace
of the all-experts pass), representer evidence (bundles with an evidence index) and concept
gradients (model directories).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from edgemode import EdgemodeError
from edgemode.explain import evidence, games
from edgemode.opener import open_path
from edgemode.runtime.perplexity import token_log_likelihoods


def label(members) -> str:
    """A coalition as JSON keys write it: its domains joined by commas in bundle order, "" for none."""
    return ",".join(members)


def pieces(text: str, encoding) -> list[str]:
    """Each token's piece of `text`: from its start to the next token's start (the text between
    tokens goes with the token before it), so the pieces add up to the text."""
    starts, last = [], 0
    for start, _ in encoding.offsets:
        last = max(last, start)
        starts.append(last)
    starts[0] = 0
    return [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]


def explain(path: str | Path, domains: list[str] | None, text: str, order: int | None = None, window: int = 256,
            token: int | None = None, progress: Callable[[str], None] = lambda message: None, kv: str = "fp32") -> dict:
    """Explain `text` under PATH (a bundle, or a MoDE model directory with mode.json) with the experts
    of `domains` (default: all) as players. `order`: of the Faith-Shap interactions (default 2, or 1
    for one player). `token`: the position whose evidence to gather (default: the token the experts
    helped most). `kv`: a bundle's KV cache type."""
    if not text.strip():
        raise EdgemodeError("the text is empty")
    source = open_path(path, kv)
    players = source.domain_set(domains)
    order = min(2, len(players)) if order is None else order
    games.check_order(len(players), order)
    if window > source.context:
        raise EdgemodeError(f"the window of {window} tokens exceeds {path}'s context ({source.context} tokens); "
                            f"pass a window of {source.context} or less")
    source.use(players)
    encoding = source.tokenizer.encode(text)
    ids, text_pieces = np.asarray(encoding.ids, np.int64), pieces(text, encoding)
    n, full = len(players), (1 << len(players)) - 1
    members = [[players[i] for i in games.players(mask)] for mask in range(1 << n)]

    scores, traces = [], []
    for mask, active in enumerate(members):
        progress(f"explain: scoring {{{label(active)}}} ({mask + 1}/{1 << n})")
        source.use(active)
        token_scores, positions = token_log_likelihoods(
            _keeping_traces(source, traces) if mask == full and source.can_trace else source.logits, ids, window)
        scores.append(token_scores)
    # each scored token's gates: those of the position before it, which predicted it
    gates = np.concatenate([t.gates[:-1] for t in traces]) if traces else None
    per_token = np.array(scores)  # (2^n, tokens)
    values = per_token.mean(axis=1)
    phi_tokens = games.shapley(per_token)  # (n, tokens); the text's Shapley values are their mean
    interactions = games.faith_shap(values, order)

    gain = per_token[full] - per_token[0]
    if token is None:
        token = int(positions[np.argmax(gain)])
    elif token not in positions:
        raise EdgemodeError(f"--token {token} is not a scored token: choose one of positions 1 to {len(ids) - 1}, "
                            "not the first of a window")
    result = {
        "domains": players,
        "tokens": len(positions),
        "window": window,
        "values": {label(active): float(values[m]) for m, active in enumerate(members)},
        "shapley": {d: float(phi_tokens[i].mean()) for i, d in enumerate(players)},
        "efficiency": {"shapley_sum": float(phi_tokens.mean(axis=1).sum()),
                       "v_all_minus_v_none": float(values[full] - values[0])},
        "order": order,
        "faith_shap": {label([players[i] for i in t]): float(x) for t, x in interactions.items()},
        "token": token,
        "per_token": {
            "position": positions.tolist(),
            "token_id": ids[positions].tolist(),
            "log_likelihood": {label(active): per_token[m].tolist() for m, active in enumerate(members)},
            "shapley": {d: phi_tokens[i].tolist() for i, d in enumerate(players)},
            **({"gates": gates.round(6).tolist()} if gates is not None else {}),
        },
        "text_pieces": text_pieces,  # every token's piece of the text, scored or not
        "evidence": None,
    }
    source.use(players)
    if source.has_evidence:  # the prediction of the token: from the position before it, in its window
        progress(f"explain: evidence for token {token}")
        _, trace = source.logits_with_trace(ids[(token - 1) // window * window : token])
        result["evidence"] = evidence.top_passages(source.evidence(), trace.hidden[-1], int(ids[token]), players)
    if source.can_concept_gradients:  # rows: the scored tokens, window by window
        progress("explain: concept gradients")
        windows = [ids[i : i + window] for i in range(0, len(ids) - 1, window)]
        result["per_token"]["concept_gradients"] = np.concatenate([source.concept_gradients(w) for w in windows]).tolist()
    return result


def _keeping_traces(source, traces: list) -> Callable[[np.ndarray], np.ndarray]:
    """`source.logits`, appending each call's Trace to `traces`."""
    def logits(ids):
        values, trace = source.logits_with_trace(ids)
        traces.append(trace)
        return values
    return logits


def summary(result: dict) -> list[str]:
    """`edgemode explain`'s readable report, as lines."""
    domains = result["domains"]
    lines = [f"text        {result['tokens']} tokens scored (windows of {result['window']}), players {', '.join(domains)}",
             "values      mean log-likelihood per token with exactly S active"]
    width = max(len(k) for k in result["values"]) + 4
    for subset, value in result["values"].items():
        lines.append(f"  {'{' + subset + '}':{width}s} {value:+.4f}")
    lines.append("shapley     " + "   ".join(f"{d} {result['shapley'][d]:+.4f}" for d in domains))
    e = result["efficiency"]
    lines.append(f"efficiency  sum {e['shapley_sum']:+.6f} = v(all) - v({{}}) {e['v_all_minus_v_none']:+.6f}")
    lines.append(f"faith-shap  order {result['order']}")
    for subset, value in result["faith_shap"].items():
        kind = "" if "," not in subset else "  complements" if value > 0 else "  substitutes"
        lines.append(f"  {'{' + subset + '}':{width}s} {value:+.4f}{kind}")
    t = result["per_token"]["position"].index(result["token"])
    phi = {d: result["per_token"]["shapley"][d][t] for d in domains}
    best = max(phi, key=phi.get)
    lines.append(f"token {result['token']:<5d} {result['text_pieces'][result['token']]!r}: experts "
                 f"{sum(phi.values()):+.3f} nats, most {best} {phi[best]:+.3f}")
    for passage in result["evidence"] or []:
        lines.append(f"  evidence  {passage['domain']:8s} {passage['score']:+.3f}  {passage['text'][:80]!r}")
    return lines
