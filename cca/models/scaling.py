"""Memory arithmetic per model and stage, and the scheduling resources of the workflow's rule groups.

Every rule belongs to a group (``GROUPS``) and asks the scheduler for ``gpu`` (count), ``mem_mb`` (host
memory), ``runtime`` (minutes) and a number of CPUs (its threads). The defaults come from here: GPUs and
memory from the model's architecture and settings, by the arithmetic below; the config's
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
class Architecture:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    d_ff: int
    vocab: int
    tied: bool  # one matrix for the input embedding and the LM head

    @property
    def parameters(self) -> int:
        """Weights of the embeddings, attention and MLP (norms, under 0.01%, left out)."""
        attn = self.hidden * self.head_dim * 2 * (self.heads + self.kv_heads)   # q, o; k, v
        mlp = 3 * self.hidden * self.d_ff                                       # gate, up, down
        return self.layers * (attn + mlp) + self.vocab * self.hidden * (1 if self.tied else 2)

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes

    @property
    def activation_bytes_per_token(self) -> int:
        """fp32 activations kept for the backward, per token, all layers (estimate)."""
        return 4 * self.layers * (10 * self.hidden + 4 * self.d_ff)

    def lora_parameters(self, r: int, targets) -> int:
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        shapes = {"q_proj": (self.hidden, q), "k_proj": (self.hidden, kv), "v_proj": (self.hidden, kv),
                  "o_proj": (q, self.hidden), "gate_proj": (self.hidden, self.d_ff),
                  "up_proj": (self.hidden, self.d_ff), "down_proj": (self.d_ff, self.hidden)}
        return self.layers * sum(r * sum(shapes[t]) for t in targets if t in shapes)


# The published configurations (config.json on the Hugging Face Hub) of the models in cca.models.registry.REGISTRY.
ARCHITECTURES = {
    "gemma-3-270m": Architecture(18, 640, 4, 1, 256, 2048, 262144, tied=True),
    "gemma-2-2b": Architecture(26, 2304, 8, 4, 256, 9216, 256000, tied=True),
    "gemma-2-9b": Architecture(42, 3584, 16, 8, 256, 14336, 256000, tied=True),
    "olmo-2-7b": Architecture(32, 4096, 32, 32, 128, 11008, 100352, tied=False),
    "olmo-2-13b": Architecture(40, 5120, 40, 40, 128, 13824, 100352, tied=False),
}


def vllm_memory(a: Architecture, dtype: str, max_model_len: int) -> dict[str, int]:
    """What a vLLM engine needs at least: the weights and the KV cache of one longest sequence."""
    b = DTYPE_BYTES[dtype]
    return {"weights": a.parameters * b, "kv_one_sequence": a.kv_bytes_per_token(b) * max_model_len}


def training_memory(a: Architecture, micro_batch: int, suffix_tokens: int) -> int:
    """Activations of one micro-batch on top of the shared prompt, whose graph is kept for the whole step."""
    return (PROMPT_TOKENS + micro_batch * suffix_tokens) * a.activation_bytes_per_token


def stage_memory(a: Architecture, group: str, settings: dict, variant: str = "nomask") -> dict[str, int]:
    """Device memory (bytes, all of the stage's GPUs together) of one stage, by part: the vLLM engine
    of the generation groups, or the Hugging Face side (fp32) of the others; the update and LoRA jobs'
    validation engine is ``validation_memory``. ``settings``: a model's (cca.config.model_settings)."""
    gen = settings["generation"]
    max_len = gen.get("max_model_len", 4096)
    fp32 = a.parameters * 4
    suffix = QUESTION_TOKENS + gen["max_new_tokens"]
    if group in VLLM_GROUPS:
        if gen["backend"] == "hf":
            return {"weights": fp32, "kv_one_sequence": a.kv_bytes_per_token(4) * max_len}
        dtype = settings["update"].get("eval_dtype", "float32") if group == "evaluation" else gen.get("dtype",
                                                                                                     "bfloat16")
        return vllm_memory(a, dtype, max_len)
    if group == "dcm":
        gib = settings["dcm"].get("cache_budget_gib", 8)
        return {"weights": fp32, "example_caches": int(gib * GIB),
                "prompt_cache": a.kv_bytes_per_token(4) * PROMPT_TOKENS}
    if group == "general":
        batch = (settings.get("general") or {}).get("batch_size", 8)
        return {"weights": fp32, "logits": batch * EVAL_TOKENS * a.vocab * 4}
    if group == "update":
        parts = {"weights": fp32,
                 "activations": training_memory(a, settings["update"].get("micro_batch", 8), suffix)}
        if variant == "nomask":
            parts["gradients"] = fp32   # plain SGD: no optimizer state
        return parts
    if group == "lora":
        lora = settings["lora"]
        return {"weights": fp32, "activations": training_memory(a, lora.get("micro_batch", 8), suffix),
                # adapters, their gradients and two AdamW moments
                "adapters": 16 * a.lora_parameters(lora["r"], lora["targets"]),
                "merged_copy": fp32}   # each validation writes a merged copy of the model
    return {}


def validation_memory(a: Architecture, settings: dict) -> dict[str, int]:
    """The vLLM engine that validates inside the update and LoRA jobs (``update.eval_dtype``); none with
    the Hugging Face backend, which validates with the model being trained."""
    if settings["generation"]["backend"] != "vllm":
        return {}
    return vllm_memory(a, settings["update"].get("eval_dtype", "float32"),
                       settings["generation"].get("max_model_len", 4096))


def gpus_for(nbytes: int, fraction: float = USABLE) -> int:
    """80 GB cards for ``nbytes`` when each gives ``fraction`` of itself (at least one)."""
    return max(1, math.ceil(nbytes / (CARD_BYTES * fraction)))


def _mb(nbytes: float) -> int:
    """Megabytes, rounded up to whole GiB."""
    return 1024 * math.ceil(nbytes / GIB)


def tensor_parallel_size(settings: dict) -> int:
    return int(settings["generation"].get("tensor_parallel_size", 1))


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
    if not settings.get("device_map"):
        return engine
    a = ARCHITECTURES.get(settings["model"])
    return engine + (gpus_for(sum(stage_memory(a, group, settings, variant).values())) if a else 1)


def default_mem_mb(group: str, settings: dict, variant: str = "nomask") -> int:
    """Host memory: ``HOST_BYTES``, plus the Hugging Face side when it runs on the CPU, plus the fp32
    copies the w/o mask update keeps on the host (the base weights and the best step's)."""
    if group in CPU_ONLY:
        return _mb(CPU_JOB_BYTES)
    a = ARCHITECTURES.get(settings["model"])
    if a is None:
        return _mb(HOST_BYTES)
    vllm_job = group in VLLM_GROUPS and settings["generation"]["backend"] == "vllm"
    on_cpu = not vllm_job and not settings.get("device_map")
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
        a = ARCHITECTURES[name]
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
