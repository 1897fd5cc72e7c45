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

import os
from dataclasses import dataclass
from typing import Protocol, Sequence

from cca.errors import CCAError
from cca.traces.config import GenerationConfig

DEFAULT_STOP = ("Q:",)


@dataclass(frozen=True)
class SamplingSpec:
    """How to continue each prompt: greedy when ``temperature == 0``."""
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = DEFAULT_STOP

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


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
        gen = torch.Generator().manual_seed(self.seed)
        out: list[list[Completion]] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = [list(p) for p in prompts[start:start + self.batch_size]]
            width = max(map(len, batch))
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=self.device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=self.device)
            kwargs = dict(max_new_tokens=spec.max_new_tokens, pad_token_id=pad, eos_token_id=sorted(self.eos),
                          stop_strings=list(spec.stop), tokenizer=self.tokenizer, num_return_sequences=spec.n)
            if spec.greedy:
                kwargs.update(do_sample=False, top_p=None, top_k=None, temperature=None)
            else:
                kwargs.update(do_sample=True, temperature=spec.temperature, top_p=spec.top_p, top_k=0)
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            with torch.no_grad():
                seqs = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
            new = seqs[:, width:].tolist()
            for i in range(len(batch)):
                out.append([canonical_completion(self.tokenizer, _strip_pad(new[i * spec.n + j], pad, self.eos),
                                                 spec.stop, self.eos, spec.max_new_tokens)
                            for j in range(spec.n)])
        return out


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
    """vLLM with prefix caching; the engine's seed is set once (a per-request seed crashes the CPU worker)."""

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

        params = SamplingParams(n=spec.n, temperature=spec.temperature, top_p=spec.top_p,
                                max_tokens=spec.max_new_tokens, stop=list(spec.stop),
                                include_stop_str_in_output=True, skip_special_tokens=True)
        # ids read back from Parquet are numpy integers, which vLLM's request serialiser refuses
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=[int(t) for t in p]) for p in prompts], params,
                                    use_tqdm=_progress())
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
