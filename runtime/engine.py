"""The on-device engine: loads a bundle with the experts asked for, and generates.

Needs numpy, onnxruntime, tokenizers and onnx (protobuf only, to compose graphs). It reads in three
parts, top to bottom:
1. onnxruntime: session options, and `Decoder`, the composed graph of one active domain set in one
   session, with each request's KV cache bound in place (past and present share a buffer);
2. `Engine`: load, set_domains, forward; one session run per step (a prefill chunk or a token);
3. generation: prompt checks, chunked prefill, the decode loop, streamed text.
Embedding rows are read from the bundle as needed (runtime/embedding.py), never held in memory.
Gate traces (the `*_with_trace` methods) run on a request's own session of the trace variant of the
graph, so requests without them run exactly the graph they ran before. Every method returns one type
whatever its arguments.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from edgemode import EdgemodeError, first_line
from edgemode.bundle import manifest as bundle_manifest
from edgemode.bundle import names
from edgemode.devices import planner, profiles
from edgemode.domains import DomainSet
from edgemode.kv import FP32, KVType, kv_type
from edgemode.runtime.compose import compose
from edgemode.runtime.embedding import EmbeddingTable
from edgemode.runtime.sampling import Sampling, choose

# 1. onnxruntime ---------------------------------------------------------------------------------

_arena_lock = threading.Lock()
_arena_registered = False


def session_options(bundle: Path, threads: int | None) -> ort.SessionOptions:
    """Options for an engine's sessions.

    Threads spin during a run and stop at its end (between steps the Python loop needs a core);
    sessions share one process-wide memory arena, so a session made by a domain switch reuses the
    activations' memory of the one it replaces. Composed graphs arrive as bytes: their weights are
    found in the bundle directory.
    """
    global _arena_registered
    with _arena_lock:
        if not _arena_registered:
            cpu = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(cpu, None)
            _arena_registered = True
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.force_spinning_stop", "1")
    options.add_session_config_entry("session.use_env_allocators", "1")
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(bundle.resolve()))
    options.log_severity_level = 4  # errors reach the caller as exceptions; don't also log them to stderr
    return options


def release_freed_memory() -> None:
    """Give memory freed by a dropped session back to the OS.

    glibc keeps freed heap pages for reuse, so without this a process never shrinks after a switch
    to fewer experts. A no-op where malloc_trim is missing (macOS, musl).
    """
    malloc_trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if malloc_trim is not None:
        malloc_trim(0)


def execution_providers(profile: dict | None) -> list[str]:
    """The device profile's first execution provider that this onnxruntime has, then the CPU's
    (which runs whatever the first cannot)."""
    available = ort.get_available_providers()
    first = next((p for p in (profile or {}).get("execution_providers", []) if p in available), "CPUExecutionProvider")
    return list(dict.fromkeys([first, "CPUExecutionProvider"]))


@dataclass
class Trace:
    """What the model did at each of `tokens` positions: `gates` (tokens, blocks, 1 + len(domains)),
    every block's gate weights over the backbone and the active experts (columns: names.BACKBONE,
    then `domains`, which are in bundle order), and `hidden` (tokens, hidden_size), the final hidden
    state (the LM head's input, after the final norm). Both float32."""

    domains: DomainSet
    gates: np.ndarray
    hidden: np.ndarray


class Decoder:
    """The composed decoder of one active domain set, in one onnxruntime session; `traced`: the
    trace variant, whose runs also return a Trace."""

    def __init__(self, graph: bytes, manifest: bundle_manifest.Manifest, domains: DomainSet, options: ort.SessionOptions,
                 providers: list[str], kv: KVType, traced: bool = False):
        self.domains, self.kv, self.traced = domains, kv, traced
        try:
            self.session = ort.InferenceSession(graph, options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise bundle_manifest.BundleError(
                f"the bundle's graphs for domains {{{','.join(domains)}}} do not load: {first_line(e)}") from None
        self.shape, self.blocks = manifest.backbone, len(manifest.layout.blocks)
        self.layers = manifest.layout.running_layers(len(domains))

    def new_cache(self, capacity: int) -> tuple[ort.IOBinding, list[ort.OrtValue], np.ndarray]:
        """A request's keys and values for every running layer, bound once and in place (past and
        present share a buffer), and its attention mask."""
        shape = (1, self.shape.kv_heads, capacity, self.kv.stored_dim(self.shape.kv_head_dim))
        binding = self.session.io_binding()
        values = []  # the binding does not keep their buffers alive
        for layer in range(self.layers):
            for past, present in zip(names.composed_kv(layer)[:2], names.composed_kv(layer)[2:]):
                values.append(ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, self.kv.element)))
                binding.bind_ortvalue_input(past, values[-1])
                binding.bind_ortvalue_output(present, values[-1])
        return binding, values, np.ones((1, capacity), np.int64)

    def run(self, embeds: np.ndarray, cache, total: int, keep: int) -> tuple[np.ndarray, Trace | None]:
        """Logits (1, keep, vocab) for the last `keep` of the `embeds` rows, and their Trace if this
        decoder is traced; the cache then holds `total` positions."""
        binding, _, mask = cache
        binding.bind_cpu_input(names.INPUTS_EMBEDS, embeds)
        binding.bind_cpu_input(names.ATTENTION_MASK, mask[:, :total])
        binding.bind_cpu_input(names.LOGITS_TO_KEEP, np.array([keep], np.int64))
        # Written into our own arrays: get_outputs() would also wrap every bound KV output.
        outputs = {names.LOGITS: np.empty((1, keep, self.shape.vocab_size), np.float32)}
        if self.traced:
            outputs[names.GATE_WEIGHTS] = np.empty((1, keep, self.blocks, 1 + len(self.domains)), np.float32)
            outputs[names.FINAL_HIDDEN] = np.empty((1, keep, self.shape.hidden_size), np.float32)
        for name, array in outputs.items():
            binding.bind_output(name, "cpu", 0, np.float32, list(array.shape), array.ctypes.data)
        self.session.run_with_iobinding(binding)
        if not self.traced:
            return outputs[names.LOGITS], None
        return outputs[names.LOGITS], Trace(self.domains, outputs[names.GATE_WEIGHTS][0], outputs[names.FINAL_HIDDEN][0])


# 2. The engine ----------------------------------------------------------------------------------

class KVCache:
    """One request: its decoder (kept through domain switches; traced or not) and that decoder's
    keys and values."""

    def __init__(self, decoder: Decoder, capacity: int):
        self.decoder, self.capacity, self.length = decoder, capacity, 0
        self.values = decoder.new_cache(capacity)

    def layer(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of KV layer `index`'s cached keys and values so far, (kv_heads, length, stored dim)."""
        keys, values = self.values[1][2 * index: 2 * index + 2]
        return keys.numpy()[0, :, :self.length].copy(), values.numpy()[0, :, :self.length].copy()


class Engine:
    """A loaded bundle. Use `Engine.load` (or `with Engine.load(...) as engine`); one forward runs at
    a time per engine, and requests interleave between steps."""

    def __init__(self, bundle: Path, manifest: bundle_manifest.Manifest, options: ort.SessionOptions, verify: bool,
                 device: dict | None, kv: KVType = FP32):
        self.bundle, self.manifest, self.options, self.verify, self.device = bundle, manifest, options, verify, device
        self.kv = kv
        self.providers = execution_providers(device)
        self.max_context = manifest.max_context  # the bundle's window; with a device, what its budget holds (set_domains)
        try:
            self.tokenizer = Tokenizer.from_file(str(bundle_manifest.resolve(bundle, manifest.tokenizer)))
        except Exception as e:  # tokenizers raises a bare Exception
            raise bundle_manifest.BundleError(f"{manifest.tokenizer} is not a readable tokenizer: {e}") from None
        self.eos_token_ids = set(manifest.eos_token_ids)
        self.hidden, self.vocab = manifest.backbone.hidden_size, manifest.backbone.vocab_size
        table = manifest.embedding_table
        self.embedding = EmbeddingTable(bundle_manifest.resolve(bundle, table.file), table, self.hidden)
        self.decoder: Decoder | None = None
        self.domains = manifest.domain_set([])
        self.closed = False
        self._verified = {manifest.tokenizer, table.file}  # by Engine.load, before any file was opened
        self._lock = threading.RLock()

    @classmethod
    def load(cls, bundle: str | Path, domains=None, threads: int | None = None, verify: bool = False,
             device: str | None = None, kv: str = "fp32") -> "Engine":
        """Load a bundle with the experts for `domains` active (a list of names; None: all of the
        bundle's, [] the backbone alone), in the bundle's order whatever order they are given in,
        keeping a `kv` cache ("fp32", "int8" or "int4": edgemode/kv.py).

        Files are checked against the manifest before any session is made: sizes always, sha256
        too with `verify=True` (the KV scales of a quantized cache always). With a `device`
        (profile name or file), the context is the longest the device's memory budget holds with
        these domains and this KV type, up to the bundle's window (`max_context`; a load is refused
        when the budget holds no context at all), and the device's thread count is the default.
        Errors are EdgemodeError subclasses with a one-line message.
        """
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= profiles.MAX_THREADS):
            raise EdgemodeError(f"threads must be an integer from 1 to {profiles.MAX_THREADS}, got {threads!r}")
        kv = kv_type(kv)
        bundle = Path(bundle)
        manifest = bundle_manifest.read(bundle)
        domains = manifest.domain_set(domains)
        profile = profiles.load(device) if device else None
        if profile:
            _fitting_context(manifest, profile, domains, kv)
            threads = threads or profile["threads"]
        bundle_manifest.verify(bundle, manifest, [manifest.tokenizer, manifest.embedding_table.file], verify)
        engine = cls(bundle, manifest, session_options(bundle, threads), verify, profile, kv)
        engine.set_domains(domains)
        return engine

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the session and the bundle's files. The engine cannot be used afterwards."""
        with self._lock:
            self.closed, self.decoder = True, None
            self.embedding.close()
        release_freed_memory()

    def _check_open(self) -> None:
        if self.closed:
            raise EdgemodeError("this engine is closed")

    def set_domains(self, domains) -> None:
        """Make exactly `domains` active (as `load` takes them): compose their decoder and swap it in.

        The previous decoder is released first unless a running request still holds it, so a switch
        needs the memory of one decoder, not two. On any error the engine keeps its previous domains.
        """
        with self._lock:
            self._check_open()
            domains = self.manifest.domain_set(domains)
            context = _fitting_context(self.manifest, self.device, domains, self.kv) if self.device else self.max_context
            files = self.manifest.with_external_data(self.manifest.graph_files(domains))
            bundle_manifest.verify(self.bundle, self.manifest, [f for f in files if f not in self._verified], self.verify)
            self._verified.update(files)
            graph = self._graph(domains)
            previous = weakref.ref(self.decoder) if self.decoder else None
            self.decoder = None  # freed now unless a running request holds it
            release_freed_memory()
            held = previous() if previous else None
            if held is not None and self.device:
                try:
                    _check_budget(self.manifest, self.device, domains, self.kv, context, held=held.domains)
                except EdgemodeError:
                    self.decoder = held
                    raise
            try:
                self.decoder = Decoder(graph, self.manifest, domains, self.options, self.providers, self.kv)
            except BaseException:
                if previous:  # the previous set again: its session if a request kept it, else a new one
                    self.decoder = held or Decoder(self._graph(self.domains), self.manifest, self.domains,
                                                   self.options, self.providers, self.kv)
                raise
            self.domains, self.max_context = domains, context

    @property
    def context_limit(self) -> str:
        """What bounds a request here, in words: the bundle's window, or what the device's budget holds."""
        window = f"this bundle's context of {self.manifest.max_context} tokens"
        if not self.device or self.max_context == self.manifest.max_context:
            return window
        return (f"the {self.max_context} tokens the {self.device['profile']} budget holds with {len(self.domains)} "
                f"domain(s) and an {self.kv.name} KV cache ({window}; a smaller KV type or fewer domains hold more)")

    @property
    def execution_provider(self) -> str:
        """The provider the session runs on first (the CPU's runs what it cannot)."""
        return self.decoder.session.get_providers()[0]

    def _graph(self, domains: DomainSet, trace: bool = False) -> bytes:
        return compose(self.bundle, self.manifest, domains, with_embedding=False, trace=trace, kv=self.kv).SerializeToString()

    @property
    def loaded_graph_bytes(self) -> int:
        """Bytes of graph files (with external data) behind the active decoder."""
        graphs = self.manifest.with_external_data(self.manifest.graph_files(self.domains))
        return sum(self.manifest.files[name].bytes for name in graphs)

    def new_cache(self, capacity: int, trace: bool = False) -> KVCache:
        """A request of up to `capacity` tokens with the domains active now. With `trace`, the
        request runs on its own session of the traced graph (composed and loaded now, as a domain
        switch is; with a device, its budget must hold both sessions)."""
        _check_positive("capacity", capacity)
        if capacity > self.max_context:
            raise EdgemodeError(f"{capacity} tokens exceed {self.context_limit}")
        with self._lock:
            self._check_open()
            if not trace:
                return KVCache(self.decoder, capacity)
            if self.device:
                _check_budget(self.manifest, self.device, self.domains, self.kv, self.max_context, held=self.domains)
            traced = Decoder(self._graph(self.domains, trace=True), self.manifest, self.domains, self.options,
                             self.providers, self.kv, traced=True)
            return KVCache(traced, capacity)

    def forward(self, token_ids, cache: KVCache, last_only: bool = False) -> np.ndarray:
        """Logits (n, vocab) for the next tokens after `cache`, which grows by n = len(token_ids);
        with `last_only`, (1, vocab) for the last of them."""
        return self._step(self._check_ids(token_ids), cache, last_only)[0]

    def forward_with_trace(self, token_ids, cache: KVCache, last_only: bool = False) -> tuple[np.ndarray, Trace]:
        """`forward`'s logits and the Trace of the same positions; `cache` from new_cache(..., trace=True)."""
        logits, trace = self._step(self._check_ids(token_ids), cache, last_only)
        if trace is None:
            raise EdgemodeError("forward_with_trace needs a cache made by new_cache(capacity, trace=True)")
        return logits, trace

    def _step(self, token_ids: np.ndarray, cache: KVCache, last_only: bool) -> tuple[np.ndarray, Trace | None]:
        """`forward` for ids already checked: logits, and the Trace if the cache is traced."""
        if not isinstance(cache, KVCache):
            raise EdgemodeError("cache must come from engine.new_cache")
        with self._lock:
            self._check_open()
            n = len(token_ids)
            if cache.length + n > cache.capacity:
                raise EdgemodeError(f"{cache.length + n} tokens exceed the cache's {cache.capacity}")
            try:
                logits, trace = cache.decoder.run(self.embedding(token_ids), cache.values, cache.length + n, 1 if last_only else n)
            except Exception as e:  # onnxruntime's own types: the graphs do not do what the manifest says
                raise bundle_manifest.BundleError(
                    f"running {self.bundle} failed ({first_line(e)}); its graphs do not match its manifest") from e
            cache.length += n
            return logits[0], trace

    def logits(self, token_ids, chunk: int = 256) -> np.ndarray:
        """Logits for every position of `token_ids`, prefilled `chunk` tokens at a time."""
        return self._logits(token_ids, chunk, trace=False)[0]

    def logits_with_trace(self, token_ids, chunk: int = 256) -> tuple[np.ndarray, Trace]:
        """`logits` and their Trace, a row for every position."""
        return self._logits(token_ids, chunk, trace=True)

    def _logits(self, token_ids, chunk: int, trace: bool) -> tuple[np.ndarray, Trace | None]:
        token_ids = self._check_ids(token_ids)
        _check_positive("chunk", chunk)
        cache = self.new_cache(len(token_ids), trace)
        steps = [self._step(token_ids[i : i + chunk], cache, False) for i in range(0, len(token_ids), chunk)]
        logits = np.concatenate([step[0] for step in steps])
        if not trace:
            return logits, None
        return logits, Trace(cache.decoder.domains, np.concatenate([t.gates for _, t in steps]),
                             np.concatenate([t.hidden for _, t in steps]))

    def _check_ids(self, token_ids) -> np.ndarray:
        ids = np.asarray(token_ids)
        if ids.ndim != 1 or not len(ids):
            raise EdgemodeError("token ids must be a non-empty list of integers")
        if not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= self.vocab:
            raise EdgemodeError(f"token ids must be integers in [0, {self.vocab})")
        return ids.astype(np.int64)

    # 3. Generation ------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise EdgemodeError("the prompt must be text")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise EdgemodeError("the prompt is not valid UTF-8 text (undecodable bytes or lone surrogates)") from None
        ids = self.tokenizer.encode(text).ids
        if ids and max(ids) >= self.vocab:
            raise bundle_manifest.BundleError(
                f"the bundle's tokenizer gives token id {max(ids)}, beyond its graphs' vocabulary of {self.vocab}: they do not belong together")
        return ids

    def generate_ids(self, prompt_ids: list[int], max_new_tokens: int = 128, sampling: Sampling = Sampling(),
                     prefill_chunk: int = planner.PREFILL_CHUNK) -> Iterator[int]:
        """Yield new token ids one at a time, stopping at an EOS token or `max_new_tokens`.

        Generation also stops when the context is full; the KV cache is sized to the prompt plus
        `max_new_tokens` (within the bundle's context), never to the model's whole context.
        """
        for token, _ in self._generate(prompt_ids, max_new_tokens, sampling, prefill_chunk, trace=False):
            yield token

    def generate_ids_with_trace(self, prompt_ids: list[int], max_new_tokens: int = 128, sampling: Sampling = Sampling(),
                                prefill_chunk: int = planner.PREFILL_CHUNK) -> Iterator[tuple[int, Trace]]:
        """`generate_ids`' tokens, each with the Trace (one row) of the position that predicted it."""
        return self._generate(prompt_ids, max_new_tokens, sampling, prefill_chunk, trace=True)

    def _generate(self, prompt_ids, max_new_tokens: int, sampling: Sampling, prefill_chunk: int,
                  trace: bool) -> Iterator[tuple[int, Trace | None]]:
        _check_positive("max_new_tokens", max_new_tokens)
        _check_positive("prefill_chunk", prefill_chunk)
        if not isinstance(sampling, Sampling):
            raise EdgemodeError("sampling must be an edgemode Sampling")
        if not len(prompt_ids):
            raise EdgemodeError("the prompt is empty")
        ids = self._check_ids(prompt_ids)
        if len(prompt_ids) >= self.max_context:
            raise EdgemodeError(f"the prompt has {len(prompt_ids)} tokens, beyond {self.context_limit} "
                                f"(at most {self.max_context - 1} prompt tokens)")
        rng = np.random.default_rng(sampling.seed)
        cache = self.new_cache(min(self.max_context, len(ids) + max_new_tokens), trace)
        for i in range(0, len(ids), prefill_chunk):
            logits, step_trace = self._step(ids[i : i + prefill_chunk], cache, last_only=True)
        while True:
            token = choose(logits[-1], sampling, rng)
            yield token, step_trace
            if token in self.eos_token_ids or cache.length - len(ids) + 1 >= max_new_tokens or cache.length >= cache.capacity:
                return
            logits, step_trace = self._step(np.array([token], np.int64), cache, last_only=True)

    def generate(self, prompt: str, max_new_tokens: int = 128, sampling: Sampling = Sampling()) -> Iterator[str]:
        """Stream the continuation of `prompt` as text pieces."""
        generated, emitted = [], ""
        for token in self.generate_ids(self.encode(prompt), max_new_tokens, sampling):
            if token in self.eos_token_ids:
                break
            generated.append(token)
            text = self.tokenizer.decode(generated)
            if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next token
                continue
            yield text[len(emitted):]
            emitted = text


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise EdgemodeError(f"{name} must be an integer >= 1, got {value!r}")


def _fitting_context(manifest: bundle_manifest.Manifest, device: dict, domains: DomainSet, kv: KVType) -> int:
    """The longest context, up to the bundle's window, whose plan fits the device's budget; refused
    when the budget holds no context at all."""
    shape, layout, quantization, budget = manifest.backbone, manifest.layout, manifest.quantization, device["budget_bytes"]
    context = planner.longest_context(shape, layout, len(domains), quantization, kv, budget, manifest.max_context)
    if context < 2:
        needed = planner.plan(shape, layout, len(domains), quantization, 2, budget, kv, manifest.max_context)
        raise EdgemodeError(
            f"{len(domains)} domain(s) need {needed['total_bytes'] / 2**20:.0f} MiB even at a 2-token context, over the "
            f"{device['profile']} budget of {budget / 2**20:.0f} MiB; try {'; or '.join(needed['suggestions'])}")
    return context


def _check_budget(manifest: bundle_manifest.Manifest, device: dict, domains: DomainSet, kv: KVType, context: int,
                  held: DomainSet) -> None:
    """Refuse a second session for `domains` while a request keeps the session of `held`, if both at
    `context` would exceed the device's budget."""
    plan = lambda d: planner.plan(manifest.backbone, manifest.layout, len(d), manifest.quantization, context,  # noqa: E731
                                  device["budget_bytes"], kv, manifest.max_context)
    both, budget = plan(domains)["total_bytes"] + plan(held)["switch_bytes"], device["budget_bytes"]
    if both > budget:
        raise EdgemodeError(
            f"a request still runs on {{{','.join(held)}}}: switching now would hold both sets' sessions, "
            f"{both / 2**20:.0f} MiB, over the {device['profile']} budget of {budget / 2**20:.0f} MiB; switch when it ends")
