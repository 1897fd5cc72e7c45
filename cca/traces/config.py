"""Settings of generation, sampling and the template filter (``generation``, ``sampling`` and
``template_filter`` of a profile)."""
from __future__ import annotations

from dataclasses import dataclass

from cca.settings import Settings


@dataclass(frozen=True)
class GenerationConfig(Settings):
    schema_path = ("$defs", "profile", "properties", "generation")

    backend: str                    # vllm | hf
    dtype: str                      # weights dtype of the vLLM engine (hf generates in float32)
    max_new_tokens: int
    max_model_len: int              # prompt + completion, tokens
    max_num_seqs: int | None        # vLLM concurrent sequences (None: 64 on CPU, 256 on GPU)
    tensor_parallel_size: int       # GPUs of one vLLM engine


@dataclass(frozen=True)
class SamplingConfig(Settings):
    schema_path = ("$defs", "profile", "properties", "sampling")

    num_samples: int                # samples drawn at most per instance to find an opposite trace
    temperature: float
    top_p: float
    max_new_tokens: int | None      # None: generation.max_new_tokens
    round_size: int                 # samples per round until an opposite trace appears (0: all at once)


@dataclass(frozen=True)
class TemplateFilterConfig(Settings):
    schema_path = ("$defs", "profile", "properties", "template_filter")

    max_base_accuracy: float        # templates below this greedy accuracy are trained on
    instances: str                  # train | train+val | all: the seed's instances the accuracy is taken over
