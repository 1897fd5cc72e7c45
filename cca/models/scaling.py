"""Memory arithmetic per model and stage, and the scheduling resources of the workflow's rule groups.

Every rule belongs to a group (``GROUPS``) and asks the scheduler for ``gpu`` (count), ``mem_mb`` (host
memory), ``runtime`` (minutes) and a number of CPUs (its threads). The defaults come from here: GPUs and
memory from the model's dimensions (its cca.models.registry entry), its architecture
(cca.models.architectures) and settings, by the arithmetic below; the config's
``profiles.<p>.resources.<group>`` (or a model's ``overrides``) replaces any of them.

Where each stage runs: vLLM (generation, the branching search, evaluation, and the validation inside
the update and LoRA jobs) on ``generation.tensor_parallel_size`` GPUs (absent: 1); the Hugging Face side
(DCM, the updates, LoRA, the general evaluation) on the CPU unless the model has a ``device_map``, then on
as many 80 GB cards as the arithmetic asks for (``device_map: auto`` spreads the layers over them).

Sizes are bytes (GiB = 2**30). Activations are an estimate for fp32 training with sdpa attention: per
token and layer, about ten hidden-sized and four d_ff-sized tensors are kept for the backward.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from cca.config import profile_default
from cca.models.architectures import PROJECTIONS, architecture
from cca.models.registry import REGISTRY, Dimensions

GIB = 2**30
CARD_BYTES = 80 * GIB       # the card the defaults are sized for (A100/H100 80 GB)
USABLE = 0.9                # of a card for the Hugging Face side, after the CUDA context and allocator slack
VLLM_FRACTION = 0.85        # of a card that vLLM takes on GPU (cca.traces.generation)
PROMPT_TOKENS = 1024        # the few-shot prompt every example shares (8-shot GSM: about 1,000 tokens)
QUESTION_TOKENS = 128       # one question after the prompt
EVAL_TOKENS = 1024          # one general-evaluation request (few-shot TriviaQA is the longest)
HOST_BYTES = 8 * GIB        # host memory of any model job besides what is counted: Python, CUDA, a shard
CPU_JOB_BYTES = 4 * GIB     # host memory of the CPU-only jobs (preparing gemma-3-270m included)
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

# group -> default runtime in minutes (ample for the paper's settings on 80 GB cards; set your queue's)
RUNTIME = {"prepare": 120, "data": 30, "generation": 720, "localization": 720, "dcm": 720, "update": 1440,
           "lora": 720, "evaluation": 240, "general": 240, "table": 30}
GROUPS = tuple(RUNTIME)
CPU_ONLY = ("prepare", "data", "table")                     # no GPU
ONE_THREAD = ("data", "table")                               # small jobs
VLLM_GROUPS = ("generation", "localization", "evaluation")   # a vLLM engine (localization: the branching search)
CLUSTER_CPUS = 8                                             # a model job's CPUs where the run gives no --cores


@dataclass(frozen=True)
class ModelSize:
    """What the arithmetic counts of one model: its dimensions (its cca.models.registry entry) and whether
    its LM head is its input embedding (its architecture's, cca.models.architectures)."""
    dims: Dimensions
    tied: bool

    @property
    def parameters(self) -> int:
        """Weights of the embeddings, attention and MLP (norms, under 0.01%, left out)."""
        d = self.dims
        attn = d.hidden * d.head_dim * 2 * (d.n_heads + d.n_kv_heads)   # q, o; k, v
        mlp = 3 * d.hidden * d.d_ff                                     # gate, up, down
        return d.n_layers * (attn + mlp) + d.vocab * d.hidden * (1 if self.tied else 2)

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return 2 * self.dims.n_layers * self.dims.n_kv_heads * self.dims.head_dim * dtype_bytes

    @property
    def activation_bytes_per_token(self) -> int:
        """fp32 activations kept for the backward, per token, all layers (estimate)."""
        return 4 * self.dims.n_layers * (10 * self.dims.hidden + 4 * self.dims.d_ff)

    def lora_parameters(self, r: int, targets) -> int:
        d = self.dims
        q, kv = d.n_heads * d.head_dim, d.n_kv_heads * d.head_dim
        p = PROJECTIONS
        shapes = {p["q"]: (d.hidden, q), p["k"]: (d.hidden, kv), p["v"]: (d.hidden, kv), p["o"]: (q, d.hidden),
                  p["gate"]: (d.hidden, d.d_ff), p["up"]: (d.hidden, d.d_ff), p["down"]: (d.d_ff, d.hidden)}
        return d.n_layers * sum(r * sum(shapes[t]) for t in targets if t in shapes)


def model_size(name: str) -> ModelSize | None:
    """The sizes of registry model ``name``; None where the registry gives no dimensions (the tiny models,
    a name it does not know): their jobs get the fixed ``HOST_BYTES`` and one GPU where they spread."""
    spec = REGISTRY.get(name)
    if spec is None or spec.dims is None:
        return None
    return ModelSize(spec.dims, architecture(spec.model_type).tied_embeddings)


def vllm_memory(a: ModelSize, dtype: str, max_model_len: int) -> dict[str, int]:
    """What a vLLM engine needs at least: the weights and the KV cache of one longest sequence."""
    b = DTYPE_BYTES[dtype]
    return {"weights": a.parameters * b, "kv_one_sequence": a.kv_bytes_per_token(b) * max_model_len}


def training_memory(a: ModelSize, micro_batch: int, suffix_tokens: int) -> int:
    """Activations of one micro-batch on top of the shared prompt, whose graph is kept for the whole step."""
    return (PROMPT_TOKENS + micro_batch * suffix_tokens) * a.activation_bytes_per_token


def stage_memory(a: ModelSize, group: str, settings: dict, variant: str = "nomask") -> dict[str, int]:
    """Device memory (bytes, all of the stage's GPUs together) of one stage, by part: the vLLM engine
    of the generation groups, or the Hugging Face side (fp32) of the others; the update and LoRA jobs'
    validation engine is ``validation_memory``. ``settings``: a model's (cca.config.model_settings, schema
    defaults filled in)."""
    gen = settings["generation"]
    max_len = gen["max_model_len"]
    fp32 = a.parameters * 4
    suffix = QUESTION_TOKENS + gen["max_new_tokens"]
    if group in VLLM_GROUPS:
        if gen["backend"] == "hf":
            return {"weights": fp32, "kv_one_sequence": a.kv_bytes_per_token(4) * max_len}
        dtype = settings["update"]["eval_dtype"] if group == "evaluation" else gen["dtype"]
        return vllm_memory(a, dtype, max_len)
    if group == "dcm":
        gib = settings["dcm"]["cache_budget_gib"]
        return {"weights": fp32, "example_caches": int(gib * GIB),
                "prompt_cache": a.kv_bytes_per_token(4) * PROMPT_TOKENS}
    if group == "general":
        # a profile without a general section runs no such job; its memory is that of the default batch
        batch = settings["general"]["batch_size"] if settings.get("general") else profile_default("general",
                                                                                                   "batch_size")
        return {"weights": fp32, "logits": batch * EVAL_TOKENS * a.dims.vocab * 4}
    if group == "update":
        parts = {"weights": fp32,
                 "activations": training_memory(a, settings["update"]["micro_batch"], suffix)}
        if variant == "nomask":
            parts["gradients"] = fp32   # plain SGD: no optimizer state
        return parts
    if group == "lora":
        lora = settings["lora"]
        return {"weights": fp32, "activations": training_memory(a, lora["micro_batch"], suffix),
                # adapters, their gradients and two AdamW moments
                "adapters": 16 * a.lora_parameters(lora["r"], lora["targets"]),
                "merged_copy": fp32}   # each validation writes a merged copy of the model
    return {}


def validation_memory(a: ModelSize, settings: dict) -> dict[str, int]:
    """The vLLM engine that validates inside the update and LoRA jobs (``update.eval_dtype``); none with
    the Hugging Face backend, which validates with the model being trained."""
    if settings["generation"]["backend"] != "vllm":
        return {}
    return vllm_memory(a, settings["update"]["eval_dtype"], settings["generation"]["max_model_len"])


def gpus_for(nbytes: int, fraction: float = USABLE) -> int:
    """80 GB cards for ``nbytes`` when each gives ``fraction`` of itself (at least one)."""
    return max(1, math.ceil(nbytes / (CARD_BYTES * fraction)))


def _mb(nbytes: float) -> int:
    """Megabytes, rounded up to whole GiB."""
    return 1024 * math.ceil(nbytes / GIB)


def tensor_parallel_size(settings: dict) -> int:
    return int(settings["generation"]["tensor_parallel_size"])


def default_gpus(group: str, settings: dict, variant: str = "nomask") -> int:
    """GPUs of a group's job: vLLM on ``tensor_parallel_size`` GPUs; the Hugging Face side on the CPU
    unless the model has a device_map, then on as many cards as its memory needs; the update and LoRA
    jobs validate with vLLM on GPUs of their own (cca.models.registry.load_model leaves them to the engine)."""
    if group in CPU_ONLY:
        return 0
    vllm = settings["generation"]["backend"] == "vllm"
    if group in VLLM_GROUPS and vllm:
        return tensor_parallel_size(settings)
    engine = tensor_parallel_size(settings) if vllm and group in ("update", "lora") else 0
    if not settings["device_map"]:
        return engine
    a = model_size(settings["model"])
    return engine + (gpus_for(sum(stage_memory(a, group, settings, variant).values())) if a else 1)


def default_mem_mb(group: str, settings: dict, variant: str = "nomask") -> int:
    """Host memory: ``HOST_BYTES``, plus the Hugging Face side when it runs on the CPU, plus the fp32
    copies the w/o mask update keeps on the host (the base weights and the best step's)."""
    if group in CPU_ONLY:
        return _mb(CPU_JOB_BYTES)
    a = model_size(settings["model"])
    if a is None:
        return _mb(HOST_BYTES)
    vllm_job = group in VLLM_GROUPS and settings["generation"]["backend"] == "vllm"
    on_cpu = not vllm_job and not settings["device_map"]
    device = sum(stage_memory(a, group, settings, variant).values()) if on_cpu else 0
    copies = 2 * a.parameters * 4 if group == "update" and variant == "nomask" else 0
    return _mb(HOST_BYTES + device + copies)


def default_resources(group: str, settings: dict, variant: str = "nomask") -> dict:
    if group not in RUNTIME:
        raise ValueError(f"unknown rule group '{group}': one of {', '.join(GROUPS)}")
    return {"gpu": default_gpus(group, settings, variant), "mem_mb": default_mem_mb(group, settings, variant),
            "runtime": RUNTIME[group]}


def rule_resources(group: str, settings: dict, variant: str = "nomask") -> dict:
    """The defaults with the config's ``resources.<group>`` on top (``cpus`` is the rule's threads:
    ``rule_threads``)."""
    configured = {k: v for k, v in ((settings.get("resources") or {}).get(group) or {}).items() if k != "cpus"}
    return {**default_resources(group, settings, variant), **configured}


def rule_threads(group: str, settings: dict, cores: int | None) -> int:
    """The configured ``cpus``; else one for the small jobs, and for the others every core of a local run
    (``cores``: the run's --cores) or ``CLUSTER_CPUS`` where the run gives none."""
    configured = ((settings.get("resources") or {}).get(group) or {}).get("cpus")
    if configured:
        return int(configured)
    if group in ONE_THREAD:
        return 1
    return cores or CLUSTER_CPUS


def machine_memory_mb() -> int:
    """This machine's physical memory in MB: the ``mem_mb`` a local run's jobs may ask for together."""
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 10**6


def memory_table(settings: dict, models=("gemma-2-2b", "gemma-2-9b", "olmo-2-7b", "olmo-2-13b")) -> str:
    """The memory arithmetic as a Markdown table: GiB on the GPUs (+ the validation engine's) and, in
    brackets, the GPUs a stage needs: for vLLM the smallest tensor-parallel size that holds the weights
    and one longest sequence, for the rest the default with a device_map (``settings``: a model's, e.g.
    one of the paper's profile)."""
    gib = lambda b: f"{b / GIB:.1f}"  # noqa: E731
    stages = (("generation", "nomask"), ("evaluation", "nomask"), ("dcm", "nomask"), ("update", "mask"),
              ("update", "nomask"), ("lora", "nomask"), ("general", "nomask"))
    rows = ["| model | parameters | bf16 weights | fp32 weights | KV cache per 4k tokens, bf16 | generation "
            "(vLLM) | evaluation (vLLM) | DCM | update w/ mask | update w/o mask | LoRA | general |",
            "|" + "---|" * 12]
    for name in models:
        a = model_size(name)
        s = {**settings, "model": name, "device_map": "auto"}
        cells = []
        for group, variant in stages:
            total = sum(stage_memory(a, group, s, variant).values())
            engine = sum(validation_memory(a, s).values()) if group in ("update", "lora") else 0
            gpus = gpus_for(total, VLLM_FRACTION) if group in VLLM_GROUPS else default_gpus(group, s, variant)
            cells.append(f"{gib(total)}" + (f" + {gib(engine)}" if engine else "") + f" ({gpus})")
        rows.append(f"| {name} | {a.parameters / 1e9:.2f} B | {gib(a.parameters * 2)} | {gib(a.parameters * 4)} | "
                    f"{gib(a.kv_bytes_per_token(2) * 4096)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
