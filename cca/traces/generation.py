"""One generation layer, two backends: vLLM (default) and Hugging Face ``generate``.

Both take prompts as token ids and return completions as token ids, cut by the same
rule, so every later stage works on the exact ids the model produced:

- generation stops at the first of: a stop string (``"Q:"``: the model starting the next
  question), the end-of-sequence token, or ``max_new_tokens``;
- ``token_ids`` keeps every generated token up to and including the one that completed
  the stop string (or the EOS token); ``text`` is their decoding, cut before the stop string.

The cut is recomputed here from the ids (``canonical_completion``), whatever the backend's own
stop handling did, so the two backends agree token for token when their logits agree.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, replace
from typing import Protocol, Sequence

from cca.errors import CCAError
from cca.traces.config import GenerationConfig

DEFAULT_STOP = ("Q:",)


@dataclass(frozen=True)
class SamplingSpec:
    """How to continue each prompt: greedy when ``temperature == 0``.

    ``seeds``: for sampling, one tuple of ``n`` seeds per prompt; sample j of prompt k is then drawn from a
    random stream of its own, seeded by ``seeds[k][j]``, whatever the other prompts of the call, their order
    or the backend's earlier calls (None: the backend's own stream, which depends on all of those).
    """
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = DEFAULT_STOP
    seeds: tuple[tuple[int, ...], ...] | None = None

    def __post_init__(self):
        if self.seeds is not None and any(len(s) != self.n for s in self.seeds):
            raise ValueError(f"SamplingSpec.seeds needs {self.n} seeds per prompt (n)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def for_prompt(self, k: int) -> "SamplingSpec":
        """The spec of prompt ``k`` generated alone."""
        return self if self.seeds is None else replace(self, seeds=(self.seeds[k],))


def sample_seed(seed: int, name: str, index: int) -> int:
    """The seed of sample ``index`` of item ``name`` (an instance id) in a run of seed ``seed``: a function of
    these three alone, so that a resumed or resharded job draws the same samples."""
    digest = hashlib.sha256(f"{seed}/{name}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class Completion:
    token_ids: tuple[int, ...]
    text: str
    finish_reason: str  # "stop" (stop string or EOS) | "length"


def canonical_completion(tokenizer, token_ids: Sequence[int], stop: Sequence[str], eos_ids: set[int],
                         max_new_tokens: int) -> Completion:
    """Cut generated ids at the first stop string or EOS (inclusive) and decode them."""
    ids = list(token_ids)[:max_new_tokens]
    for i, tok in enumerate(ids):
        if tok in eos_ids:
            ids = ids[: i + 1]
            text = tokenizer.decode(ids[:-1], skip_special_tokens=True)
            return Completion(tuple(ids), text, "stop")
    text = tokenizer.decode(ids, skip_special_tokens=True)
    hits = [text.find(s) for s in stop if s in text]
    if not hits:
        return Completion(tuple(ids), text, "length")
    cut = min(hits)
    # The shortest prefix of ids whose decoding already contains the stop string.
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if any(s in tokenizer.decode(ids[:mid], skip_special_tokens=True) for s in stop):
            hi = mid
        else:
            lo = mid + 1
    return Completion(tuple(ids[:lo]), text[:cut], "stop")


class Backend(Protocol):
    tokenizer: object

    def generate(self, prompts: Sequence[Sequence[int]], spec: SamplingSpec) -> list[list[Completion]]:
        """``spec.n`` completions for each prompt (token ids), in prompt order."""


def eos_token_ids(tokenizer, model_config=None) -> set[int]:
    ids = set()
    for source in (tokenizer, model_config):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids


def check_lengths(prompts: Sequence[Sequence[int]], names: Sequence[str], max_new_tokens: int,
                  max_len: int) -> None:
    """Refuse prompts that cannot fit the model's context with room for the completion."""
    for ids, name in zip(prompts, names):
        if len(ids) + max_new_tokens > max_len:
            raise CCAError(f"prompt of {name} has {len(ids)} tokens; with max_new_tokens {max_new_tokens} it exceeds "
                           f"the context of {max_len} tokens: shorten the prompt (fewer exemplars) or raise "
                           "generation.max_model_len")


class HFBackend:
    """Hugging Face ``generate`` in batches (left padding); for tiny models and as a cross-check."""

    def __init__(self, model, tokenizer, batch_size: int = 16, seed: int = 0):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.seed = batch_size, seed
        self.eos = eos_token_ids(tokenizer, model.generation_config)
        self.max_len = getattr(model.config, "max_position_embeddings", None) or 4096

    @property
    def device(self):
        from cca.models.registry import input_device

        return input_device(self.model)

    def generate(self, prompts, spec: SamplingSpec) -> list[list[Completion]]:
        import torch

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos)
        if spec.seeds is not None and not spec.greedy:
            return self._generate_seeded(prompts, spec, pad)
        gen = torch.Generator().manual_seed(self.seed)
        out: list[list[Completion]] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = [list(p) for p in prompts[start:start + self.batch_size]]
            kwargs = dict(num_return_sequences=spec.n)
            if spec.greedy:
                kwargs.update(do_sample=False, top_p=None, top_k=None, temperature=None)
            else:
                kwargs.update(do_sample=True, temperature=spec.temperature, top_p=spec.top_p, top_k=0)
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            new = self._run(batch, spec, pad, **kwargs)
            for i in range(len(batch)):
                out.append([canonical_completion(self.tokenizer, _strip_pad(new[i * spec.n + j], pad, self.eos),
                                                 spec.stop, self.eos, spec.max_new_tokens)
                            for j in range(spec.n)])
        return out

    def _run(self, batch: list[list[int]], spec: SamplingSpec, pad: int, **kwargs) -> list[list[int]]:
        """``generate`` on one left-padded batch; the new ids of each returned row."""
        import torch

        width = max(map(len, batch))
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=self.device)
        with torch.no_grad():
            seqs = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=spec.max_new_tokens,
                                       pad_token_id=pad, eos_token_id=sorted(self.eos), stop_strings=list(spec.stop),
                                       tokenizer=self.tokenizer, **kwargs)
        return seqs[:, width:].tolist()

    def _generate_seeded(self, prompts, spec: SamplingSpec, pad: int) -> list[list[Completion]]:
        """Sampling with one random stream per (prompt, sample): every sample is a row of its own, decoded
        greedily over its logits plus Gumbel noise from its own generator (``seeded_sampling``)."""
        from transformers import LogitsProcessorList

        rows = [(list(p), seed) for p, seeds in zip(prompts, spec.seeds) for seed in seeds]
        new: list[list[int]] = []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            sampler = seeded_sampling([seed for _, seed in chunk], spec.temperature, spec.top_p)
            new += self._run([p for p, _ in chunk], spec, pad, do_sample=False, top_p=None, top_k=None,
                             temperature=None, logits_processor=LogitsProcessorList([sampler]))
        done = [canonical_completion(self.tokenizer, _strip_pad(ids, pad, self.eos), spec.stop, self.eos,
                                     spec.max_new_tokens) for ids in new]
        return [done[k * spec.n:(k + 1) * spec.n] for k in range(len(prompts))]


@functools.cache
def _seeded_sampling_class():
    """The logits processor's class, defined once on first use (transformers is imported only then)."""
    from transformers import LogitsProcessor

    class _SeededSampling(LogitsProcessor):
        """Makes greedy decoding draw each row's next token from softmax(logits / temperature), restricted to
        the top_p nucleus, with that row's own generator: the argmax of logits / temperature plus standard
        Gumbel noise is such a draw (the Gumbel-max rule). A row's k-th token uses its generator's k-th draw,
        whatever the other rows of the batch."""

        def __init__(self, seeds, temperature: float, top_p: float):
            import torch

            self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
            self.temperature, self.top_p = temperature, top_p

        def __call__(self, input_ids, scores):
            import torch

            logits = scores.float() / self.temperature                      # (rows, vocab)
            if self.top_p < 1.0:
                ordered, order = logits.sort(dim=-1, descending=True)
                probs = ordered.softmax(dim=-1)
                outside = probs.cumsum(dim=-1) - probs >= self.top_p         # the nucleus is full before them
                logits = logits.scatter(-1, order, ordered.masked_fill(outside, float("-inf")))
            u = torch.stack([torch.rand(logits.shape[-1], generator=g, dtype=torch.float64)
                             for g in self.generators])
            gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
            return logits + gumbel.to(device=logits.device, dtype=logits.dtype)

    return _SeededSampling


def seeded_sampling(seeds, temperature: float, top_p: float):
    """A ``transformers`` logits processor: per-row seeded sampling for greedy decoding (see its class)."""
    return _seeded_sampling_class()(seeds, temperature, top_p)


def _strip_pad(ids: list[int], pad: int, eos: set[int]) -> list[int]:
    # generate() pads finished rows; padding only ever follows a stop, so cut at the first stop-or-pad
    # that is not part of the output proper (canonical_completion handles EOS and stop strings).
    if pad in eos:
        return ids
    while ids and ids[-1] == pad:
        ids = ids[:-1]
    return ids


# KV cache of a vLLM engine on CPU: gemma-3-270m in float32 keeps 36 KiB per token, so 2 GiB hold ~58k tokens,
# several times what 64 concurrent sequences sharing an 8-shot prompt (prefix caching) need.
CPU_KV_CACHE_GIB = 2


class VLLMBackend:
    """vLLM with prefix caching; the engine's seed is set once, and a spec with ``seeds`` seeds each sample's
    request on its own."""

    def __init__(self, model_path: str, dtype: str, max_model_len: int, seed: int = 0,
                 memory_fraction: float | None = None, enforce_eager: bool | None = None,
                 max_num_seqs: int | None = None, tensor_parallel_size: int = 1):
        from vllm import LLM
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        if on_cpu and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            # The worker's threads are bound to every core this process may use: vLLM's "auto" binding
            # can leave it one core on a small machine (docs/performance.md has the measurement).
            cores = sorted(os.sched_getaffinity(0))
            contiguous = cores == list(range(cores[0], cores[-1] + 1))
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = (f"{cores[0]}-{cores[-1]}" if contiguous
                                                      else ",".join(map(str, cores)))
        kv_bytes = None
        if on_cpu and memory_fraction is None and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            # A fixed KV cache on CPU. vLLM's own sizing (a fraction of the NUMA node's memory minus what the
            # process already holds) goes negative for a float32 model on a node of 11 GiB and the engine
            # refuses to start. VLLM_CPU_KVCACHE_SPACE (GiB) overrides this.
            kv_bytes = CPU_KV_CACHE_GIB * 2**30
        if memory_fraction is None:
            memory_fraction = 0.25 if on_cpu else 0.85
        if max_num_seqs is None:
            # On CPU the fixed KV cache holds about 64 few-shot prompts: more concurrent sequences are
            # preempted and recomputed (docs/performance.md).
            max_num_seqs = 64 if on_cpu else 256
        # tensor parallelism only when asked for: the engine's arguments stay as they were otherwise
        parallel = {"tensor_parallel_size": tensor_parallel_size} if tensor_parallel_size > 1 else {}
        self.llm = LLM(model=str(model_path), dtype=dtype, max_model_len=max_model_len, seed=seed,
                       enable_prefix_caching=True, gpu_memory_utilization=memory_fraction,
                       enforce_eager=on_cpu if enforce_eager is None else enforce_eager, max_num_seqs=max_num_seqs,
                       kv_cache_memory_bytes=kv_bytes, **parallel)
        self.tokenizer = self.llm.get_tokenizer()
        hf_config = self.llm.llm_engine.model_config.hf_config
        self.eos = eos_token_ids(self.tokenizer, getattr(self.llm.llm_engine, "generation_config_fields", None))
        self.eos |= eos_token_ids(self.tokenizer, hf_config)
        self.max_len = max_model_len

    def generate(self, prompts, spec: SamplingSpec) -> list[list[Completion]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        def params(n=spec.n, seed=None):
            return SamplingParams(n=n, temperature=spec.temperature, top_p=spec.top_p, seed=seed,
                                  max_tokens=spec.max_new_tokens, stop=list(spec.stop),
                                  include_stop_str_in_output=True, skip_special_tokens=True)

        # ids read back from Parquet are numpy integers, which vLLM's request serialiser refuses
        requests = [TokensPrompt(prompt_token_ids=[int(t) for t in p]) for p in prompts]
        if spec.seeds is not None and not spec.greedy:
            # one request per sample, seeded on its own: vLLM draws a seeded request's tokens from a
            # generator of that request alone (prefix caching shares the prompt's keys and values)
            outputs = self.llm.generate([r for r, seeds in zip(requests, spec.seeds) for _ in seeds],
                                        [params(1, seed) for seeds in spec.seeds for seed in seeds],
                                        use_tqdm=_progress())
            flat = [canonical_completion(self.tokenizer, req.outputs[0].token_ids, spec.stop, self.eos,
                                         spec.max_new_tokens) for req in outputs]
            return [flat[k * spec.n:(k + 1) * spec.n] for k in range(len(prompts))]
        outputs = self.llm.generate(requests, params(), use_tqdm=_progress())
        return [[canonical_completion(self.tokenizer, o.token_ids, spec.stop, self.eos, spec.max_new_tokens)
                 for o in sorted(req.outputs, key=lambda o: o.index)] for req in outputs]

    def close(self) -> None:
        """Stop the engine's processes now. Left to the interpreter's exit, vLLM's shutdown logs to streams
        that may already be closed (under pytest's capture, for one) and prints logging tracebacks."""
        core = getattr(self.llm.llm_engine, "engine_core", None)
        if core is not None:
            core.shutdown()

    def reload_weights(self, checkpoint_dir) -> None:
        """Load new weights (a Hugging Face checkpoint directory) into the running engine, in place,
        and drop the prefix cache computed with the old ones."""
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(checkpoint_dir)})
        self.llm.reset_prefix_cache()


def _progress() -> bool:
    return os.environ.get("CCA_PROGRESS", "1") != "0"


def open_backend(checkpoint_dir, generation: GenerationConfig, seed: int, device_map: str | None = None) -> Backend:
    """A backend over a prepared checkpoint (``results/<model>/checkpoint``): vLLM on
    ``generation.tensor_parallel_size`` GPUs, or Hugging Face on the CPU or spread by ``device_map``."""
    from cca.models.registry import checkpoint_path

    if generation.backend == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError as e:
            raise CCAError("generation.backend is vllm but vLLM is not installed: make install (CPU) or "
                           "make install EXTRA=gpu, or set generation.backend: hf in config.yaml") from e
        return VLLMBackend(checkpoint_path(checkpoint_dir), dtype=generation.dtype,
                           max_model_len=generation.max_model_len, seed=seed, max_num_seqs=generation.max_num_seqs,
                           tensor_parallel_size=generation.tensor_parallel_size)
    if generation.backend == "hf":
        from cca.models.registry import load_model

        model, tokenizer = load_model(checkpoint_dir, dtype="float32", device_map=device_map)
        b = HFBackend(model, tokenizer, seed=seed)
        b.max_len = min(b.max_len, generation.max_model_len)
        return b
    raise CCAError(f"unknown generation backend '{generation.backend}': use vllm or hf")
