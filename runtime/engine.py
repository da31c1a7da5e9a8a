"""The on-device engine: loads a bundle's backbone and only the experts asked for, and generates.

Needs numpy, onnxruntime and tokenizers only. Each component is its own ONNX session, except the
embedding table, which is read a row at a time (runtime/embedding.py); the KV cache
belongs to one request and is bound in place (past and present share a buffer), so a decode step
copies no cache. Switching domains loads and drops expert sessions and leaves the backbone alone.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from edgemode import EdgemodeError, first_line
from edgemode.bundle import manifest as bundle_manifest
from edgemode.devices import planner, profiles
from edgemode.domains import check_domains
from edgemode.runtime.embedding import EmbeddingTable
from edgemode.runtime.sampling import Sampling, choose

HIDDEN, SEQLENS, TOTAL = "hidden", "seqlens_k", "total_sequence_length"


_arena_lock = threading.Lock()
_arena_registered = False


def session_options(threads: int | None) -> ort.SessionOptions:
    """Options for every session of an engine.

    A token runs several sessions in turn, so their threads spin only during a run and stop at its
    end (spinning on would starve the next session; never spinning wakes threads for every op),
    and they share one process-wide memory arena (one arena per session would each hold its own
    peak activations).
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
    options.log_severity_level = 4  # errors reach the caller as exceptions; don't also log them to stderr
    return options


def open_session(path: Path, options: ort.SessionOptions, inputs: tuple[str, ...], hidden: int) -> ort.InferenceSession:
    """A session for a bundle graph that must take `inputs` (a `hidden` input of width `hidden`)."""
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise bundle_manifest.BundleError(f"{path.name} is not a loadable graph: {first_line(e)}") from None
    shapes = {i.name: i.shape for i in session.get_inputs()}
    if not set(inputs) <= set(shapes) or (HIDDEN in shapes and shapes[HIDDEN][-1] != hidden):
        raise bundle_manifest.BundleError(f"{path.name} is not the graph this bundle's manifest says it is")
    return session


def release_freed_memory() -> None:
    """Give memory freed by dropped sessions back to the OS.

    glibc keeps freed heap pages for reuse: without this, dropping an expert (measured on SmolLM2
    int4) returned about 4 of the 22 MB it had added. A no-op where malloc_trim is missing (macOS,
    musl). Sessions that a running request still holds are freed when it ends, untrimmed.
    """
    malloc_trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if malloc_trim is not None:
        malloc_trim(0)


class DecoderSession:
    """A session over a run of decoder layers, with the names of its KV inputs and outputs."""

    def __init__(self, path: Path, options: ort.SessionOptions, hidden: int):
        self.session = open_session(path, options, (HIDDEN, SEQLENS, TOTAL, "past_key.0"), hidden)
        self.layers = sum(1 for i in self.session.get_inputs() if i.name.startswith("past_key."))
        self.kv_shape = self.session.get_inputs()[3].shape  # (batch, kv_heads, past_sequence, head_dim)

    def new_cache(self, capacity: int) -> tuple[ort.IOBinding, list[ort.OrtValue]]:
        """A request's keys and values, bound once and in place: past and present share a buffer."""
        shape = (1, self.kv_shape[1], capacity, self.kv_shape[3])
        binding = self.session.io_binding()
        values = []  # the binding does not keep their numpy buffers alive
        for i in range(self.layers):
            for kind in ("key", "value"):
                values.append(ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, np.float32)))
                binding.bind_ortvalue_input(f"past_{kind}.{i}", values[-1])
                binding.bind_ortvalue_output(f"present_{kind}.{i}", values[-1])
        return binding, values

    def run(self, hidden: np.ndarray, cache, seqlens: np.ndarray, total: np.ndarray) -> np.ndarray:
        binding = cache[0]
        binding.bind_cpu_input(HIDDEN, hidden)
        binding.bind_cpu_input(SEQLENS, seqlens)
        binding.bind_cpu_input(TOTAL, total)
        # Written in place into our own array: reading it back with get_outputs() would wrap every
        # bound KV output as well (measured: 0.15 ms more per block run).
        out = np.empty_like(hidden)
        binding.bind_output(HIDDEN + "_out", "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        self.session.run_with_iobinding(binding)
        return out


class KVCache:
    """One request's keys and values for every layer that runs, expert layers included."""

    def __init__(self, engine: "Engine", capacity: int):
        self.capacity = capacity
        self.length = 0
        self.domains = list(engine.domains)
        self.gate_columns = [0] + [1 + engine.manifest["domains"].index(d) for d in self.domains]
        # The request keeps the sessions it started with: a domain switch meanwhile affects only
        # requests that start after it.
        self.gates = engine.gates
        self.expert_sessions = {d: engine.experts[d] for d in self.domains}
        self.backbone = [s.new_cache(capacity) for s in engine.backbone]
        self.experts = {d: [s.new_cache(capacity) for s in engine.experts[d]] for d in self.domains}


class Engine:
    """A loaded bundle. Use `Engine.load`; one generation runs at a time per engine."""

    def __init__(self, bundle: Path, manifest: dict, options: ort.SessionOptions, verify: bool, device: dict | None):
        self.bundle, self.manifest, self.options, self.verify, self.device = bundle, manifest, options, verify, device
        self.max_context = min(int(manifest["max_context"]), device["max_context"] if device else 1 << 62)
        try:
            self.tokenizer = Tokenizer.from_file(str(bundle_manifest.resolve(bundle, manifest["tokenizer"])))
        except Exception as e:  # tokenizers raises a bare Exception
            raise bundle_manifest.BundleError(f"{manifest['tokenizer']} is not a readable tokenizer: {e}") from None
        self.eos_token_ids = set(manifest.get("eos_token_ids", []))
        graphs = manifest["graphs"]
        self.hidden, self.vocab = manifest["backbone"]["hidden_size"], manifest["backbone"]["vocab_size"]
        table = manifest["embedding_table"]
        self.embedding = EmbeddingTable(self._path(table["file"]), table, self.hidden)
        self.head = self._session(graphs["head"], (HIDDEN,))
        self.backbone = [DecoderSession(self._path(g), options, self.hidden) for g in graphs["backbone"]]
        self.gates: list[ort.InferenceSession] = []
        self.experts: dict[str, list[DecoderSession]] = {}
        self.domains: list[str] = []
        self._lock = threading.RLock()

    @classmethod
    def load(cls, bundle: str | Path, domains=(), threads: int | None = None, verify: bool = False,
             device: str | None = None) -> "Engine":
        """Load a bundle with the experts for `domains` active.

        Files are checked against the manifest before any session is made: sizes always, sha256
        too with `verify=True`. With a `device` (profile name or file), the plan for these domains
        at the device's context must fit its memory budget, and the device's thread count is the
        default. Errors are EdgemodeError subclasses with a one-line message.
        """
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= profiles.MAX_THREADS):
            raise EdgemodeError(f"threads must be an integer from 1 to {profiles.MAX_THREADS}, got {threads!r}")
        bundle = Path(bundle)
        manifest = bundle_manifest.read(bundle)
        domains = _check_domains(manifest, domains)
        profile = profiles.load(device) if device else None
        if profile:
            _check_budget(manifest, profile, domains)
            threads = threads or profile["threads"]
        needed = bundle_manifest.graph_files(manifest, domains) + [manifest["tokenizer"]]
        bundle_manifest.verify(bundle, manifest, bundle_manifest.with_external_data(manifest, needed), verify)
        engine = cls(bundle, manifest, session_options(threads), verify, profile)
        engine.set_domains(domains)
        return engine

    def _path(self, name: str) -> Path:
        return bundle_manifest.resolve(self.bundle, name)

    def _session(self, name: str, inputs: tuple[str, ...]) -> ort.InferenceSession:
        return open_session(self._path(name), self.options, inputs, self.hidden)

    def set_domains(self, domains) -> None:
        """Make exactly `domains` active: load missing experts, drop the others; backbone untouched.

        On any error the engine keeps its previous domains.
        """
        with self._lock:
            domains = _check_domains(self.manifest, domains)
            if self.device:
                _check_budget(self.manifest, self.device, domains)
            graphs = self.manifest["graphs"]
            added = [d for d in domains if d not in self.experts]
            files = [g for d in added for g in graphs["experts"][d]] + (graphs["gates"] if domains and not self.gates else [])
            bundle_manifest.verify(self.bundle, self.manifest, bundle_manifest.with_external_data(self.manifest, files), self.verify)
            loaded = {d: [DecoderSession(self._path(g), self.options, self.hidden) for g in graphs["experts"][d]] for d in added}
            gates = self.gates or ([self._session(g, (HIDDEN,)) for g in graphs["gates"]] if domains else [])
            dropped = [d for d in self.experts if d not in domains]
            self.experts = {d: self.experts.get(d) or loaded[d] for d in domains}
            self.gates = gates if domains else []
            self.domains = domains
            if dropped:
                release_freed_memory()

    @property
    def loaded_graph_bytes(self) -> int:
        """Bytes of graph files (with external data) behind the sessions now loaded."""
        names = bundle_manifest.graph_files(self.manifest, self.domains)
        files = self.manifest["files"]
        return sum(files[n]["bytes"] for n in bundle_manifest.with_external_data(self.manifest, names))

    def new_cache(self, capacity: int) -> KVCache:
        if capacity > self.max_context:
            raise EdgemodeError(f"{capacity} tokens exceed this bundle's context of {self.max_context} tokens")
        return KVCache(self, capacity)

    def forward(self, token_ids: np.ndarray, cache: KVCache, last_only: bool = False) -> np.ndarray:
        """Logits (n, vocab) for the next tokens after `cache`, which grows by n = len(token_ids).

        One forward runs at a time per engine; requests interleave between steps.
        """
        with self._lock:
            try:
                return self._forward(token_ids, cache, last_only)
            except EdgemodeError:
                raise
            except Exception as e:  # onnxruntime's own types: the graphs do not do what the manifest says
                raise bundle_manifest.BundleError(
                    f"running {self.bundle} failed ({first_line(e)}); its graphs do not match its manifest") from e

    def _forward(self, token_ids: np.ndarray, cache: KVCache, last_only: bool) -> np.ndarray:
        n = len(token_ids)
        if cache.length + n > cache.capacity:
            raise EdgemodeError(f"{cache.length + n} tokens exceed the cache's {cache.capacity}")
        total = cache.length + n
        seqlens, total = np.array([total - 1], np.int32), np.array(total, np.int32)
        x = self.embedding(token_ids)
        for b, backbone in enumerate(self.backbone):
            y = backbone.run(x, cache.backbone[b], seqlens, total)
            if cache.domains:
                gate_logits = cache.gates[b].run(None, {HIDDEN: x})[0][..., cache.gate_columns]
                weights = np.exp(gate_logits - gate_logits.max(-1, keepdims=True))
                weights /= weights.sum(-1, keepdims=True)
                y = weights[..., :1] * y
                for j, d in enumerate(cache.domains, start=1):
                    y += weights[..., j : j + 1] * cache.expert_sessions[d][b].run(x, cache.experts[d][b], seqlens, total)
            x = y
        cache.length += n
        if last_only:
            x = x[:, -1:]
        return self.head.run(None, {HIDDEN: np.ascontiguousarray(x)})[0][0]

    def logits(self, token_ids, chunk: int = 256) -> np.ndarray:
        """Logits for every position of `token_ids`, prefilled `chunk` tokens at a time."""
        token_ids = self._check_ids(token_ids)
        with self._lock:
            cache = self.new_cache(len(token_ids))
        return np.concatenate([self.forward(token_ids[i : i + chunk], cache) for i in range(0, len(token_ids), chunk)])

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

    def _check_ids(self, token_ids) -> np.ndarray:
        ids = np.asarray(token_ids)
        if ids.ndim != 1 or not len(ids):
            raise EdgemodeError("token ids must be a non-empty list of integers")
        if not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= self.vocab:
            raise EdgemodeError(f"token ids must be integers in [0, {self.vocab})")
        return ids.astype(np.int64)

    def generate_ids(self, prompt_ids: list[int], max_new_tokens: int = 128, sampling: Sampling = Sampling(),
                     prefill_chunk: int = planner.PREFILL_CHUNK) -> Iterator[int]:
        """Yield new token ids one at a time, stopping at an EOS token or `max_new_tokens`.

        Generation also stops when the context is full; the KV cache is sized to the prompt plus
        `max_new_tokens` (within the bundle's context), never to the model's whole context.
        """
        for name, value in (("max_new_tokens", max_new_tokens), ("prefill_chunk", prefill_chunk)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise EdgemodeError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(sampling, Sampling):
            raise EdgemodeError("sampling must be an edgemode Sampling")
        if not len(prompt_ids):
            raise EdgemodeError("the prompt is empty")
        ids = self._check_ids(prompt_ids)
        if len(prompt_ids) >= self.max_context:
            raise EdgemodeError(
                f"the prompt has {len(prompt_ids)} tokens; this bundle's context is {self.max_context} "
                f"(at most {self.max_context - 1} prompt tokens)"
            )
        rng = np.random.default_rng(sampling.seed)
        with self._lock:
            cache = self.new_cache(min(self.max_context, len(ids) + max_new_tokens))
        for i in range(0, len(ids), prefill_chunk):
            logits = self.forward(ids[i : i + prefill_chunk], cache, last_only=True)
        while True:
            token = choose(logits[-1], sampling, rng)
            yield token
            if token in self.eos_token_ids or cache.length - len(ids) + 1 >= max_new_tokens or cache.length >= cache.capacity:
                return
            logits = self.forward(np.array([token], np.int64), cache, last_only=True)

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


def _check_domains(manifest: dict, domains) -> list[str]:
    return check_domains(manifest["domains"], domains, "this bundle")


def _check_budget(manifest: dict, device: dict, domains: list[str]) -> None:
    context = min(int(manifest["max_context"]), device["max_context"])
    needed = planner.plan(planner.shape_of_bundle(manifest), len(domains), manifest["quantization"], context,
                          device["budget_bytes"])
    if not needed["fits"]:
        raise EdgemodeError(
            f"{len(domains)} domain(s) at {context} tokens need {needed['total_bytes'] / 2**20:.0f} MiB, over the "
            f"{device['profile']} budget of {device['budget_bytes'] / 2**20:.0f} MiB; try {'; or '.join(needed['suggestions'])}"
        )
