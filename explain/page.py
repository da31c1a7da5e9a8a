"""`edgemode explain --html`: one self-contained page (inline style, no scripts, nothing fetched).

The text with each token shaded by the expert whose per-token Shapley value is largest (darker:
more nats; unshaded: no expert helped it), its numbers in the token's tooltip; tables of the values,
Shapley values and Faith-Shap interactions; the evidence passages of the chosen token, and concept
gradients where the explanation has them.
"""

from __future__ import annotations

from html import escape
from math import exp

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]  # one per player (8 at most)

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; color: #222; max-width: 60em; margin: 2em auto; padding: 0 1em; }
.text { white-space: pre-wrap; font: 16px/1.9 Georgia, serif; border: 1px solid #ddd; padding: 1em; }
.tok { border-radius: 3px; }
.tok.chosen { outline: 2px solid #000; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { padding: .2em .9em; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.swatch { display: inline-block; width: .9em; height: .9em; border-radius: 2px; vertical-align: -.1em; margin-right: .3em; }
blockquote { margin: .5em 0; padding: .3em .8em; border-left: 4px solid #ccc; white-space: pre-wrap; }
"""


def _rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha:.2f})"


def _subset(key: str) -> str:
    return "{" + key + "}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _text(result: dict) -> str:
    """The text as token spans, shaded by the expert that helped each token most."""
    domains, per_token = result["domains"], result["per_token"]
    phi = per_token["shapley"]
    row_of = {p: i for i, p in enumerate(per_token["position"])}
    scale = max([max(phi[d]) for d in domains] + [1e-9])
    spans = []
    for position, piece in enumerate(result["text_pieces"]):
        classes, style, title = "tok", "", f"token {position}: not scored (the first of its window)"
        if position in row_of:
            i = row_of[position]
            best = max(domains, key=lambda d: phi[d][i])
            lines = [f"token {position}"] + [f"log p {_subset(k)}: {v[i]:+.3f}" for k, v in per_token["log_likelihood"].items()]
            lines += [f"Shapley {d}: {phi[d][i]:+.3f}" for d in domains]
            if "gates" in per_token:
                lines += [f"gates block {b}: " + " ".join(f"{w:.2f}" for w in row) for b, row in enumerate(per_token["gates"][i])]
            title = "\n".join(lines)
            if phi[best][i] > 0:
                style = f' style="background:{_rgba(COLOURS[domains.index(best)], 0.15 + 0.75 * phi[best][i] / scale)}"'
                classes += f" by-{best}"
        if position == result["token"]:
            classes += " chosen"
        spans.append(f'<span class="{classes}" id="t{position}" title="{escape(title)}"{style}>{escape(piece)}</span>')
    return "".join(spans)


def render(result: dict, source: str) -> str:
    """The page of one `explain` result; `source` names the bundle or model directory."""
    domains = result["domains"]
    legend = " ".join(f'<span class="swatch" style="background:{c}"></span>{escape(d)}' for d, c in zip(domains, COLOURS))
    values = _table(["S", "v(S): mean log p per token", "perplexity"],
                    [[escape(_subset(k)), f"{v:+.4f}", f"{exp(-v):.3f}"] for k, v in result["values"].items()])
    shapley = _table(["expert", "Shapley value (nats per token)"],
                     [[f'<span class="swatch" style="background:{c}"></span>{escape(d)}', f"{result['shapley'][d]:+.4f}"]
                      for d, c in zip(domains, COLOURS)])
    e = result["efficiency"]
    interactions = _table(["S", "Faith-Shap index", ""], [
        [escape(_subset(k)), f"{v:+.4f}", "" if "," not in k else "complements" if v > 0 else "substitutes"]
        for k, v in result["faith_shap"].items()])
    token = result["token"]
    chosen = f"token {token}, {escape(repr(result['text_pieces'][token]))}"
    if result["evidence"] is None:
        evidence = "<p>No evidence: it needs a bundle exported with an evidence index (<code>edgemode export --evidence</code>).</p>"
    else:
        evidence = "".join(f'<p class="passage">{escape(p["domain"])}, score {p["score"]:+.3f}</p><blockquote>{escape(p["text"])}</blockquote>'
                           for p in result["evidence"]) or "<p>No training passage of the index supports this prediction.</p>"
    concepts = ""
    if "concept_gradients" in result["per_token"]:
        rows = result["per_token"]["concept_gradients"][result["per_token"]["position"].index(token)]
        concepts = (f"<h2>Concept gradients for {chosen}</h2><p>d log p / d (block's gate probability of a domain).</p>"
                    + _table(["block"] + [escape(d) for d in domains], [[str(b)] + [f"{x:+.4f}" for x in row] for b, row in enumerate(rows)]))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgemode explain: {escape(source)}</title><style>{STYLE}</style></head>
<body>
<h1>Which expert helped</h1>
<p>{escape(source)}: {result['tokens']} tokens scored, experts {escape(', '.join(domains))}. Each token is shaded by the expert
whose Shapley value for it is largest (darker: more nats); unshaded tokens were helped by no expert. Hover a token for its numbers.</p>
<p>{legend}</p>
<div class="text">{_text(result)}</div>
<h2>Shapley values</h2>
{shapley}
<p>Efficiency: the values add up to {e['shapley_sum']:+.6f}; v(all) &minus; v({{}}) = {e['v_all_minus_v_none']:+.6f}.</p>
<h2>Values of the coalitions</h2>
{values}
<h2>Interactions (Faith-Shap, order {result['order']})</h2>
<p>Positive pairs are complements (together they help more than the sum of their parts), negative pairs substitutes.</p>
{interactions}
<h2>Evidence for {chosen}</h2>
{evidence}
{concepts}</body></html>
"""
