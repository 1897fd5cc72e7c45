"""Validation of a model being trained (the targeted update, LoRA): greedy exact match on the val split.

Validation generates in ``update.eval_dtype``: in bfloat16 an update smaller than ~1/256 of a weight
rounds away, and most lr * grad steps are that small. With the vLLM backend each look writes the current
weights as a checkpoint and reloads them into one running engine; with the Hugging Face backend the live
model generates.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd

from cca.errors import CCAError
from cca.tasks.prompting import gold_answers
from cca.traces.config import GenerationConfig
from cca.update.targeted import exact_match, val_accuracy


def traces_match_validation(generation: GenerationConfig, eval_dtype: str) -> bool:
    """Whether the greedy traces were generated in the dtype that validation and evaluation use: then they
    are the original model's greedy evaluation."""
    return generation.dtype == eval_dtype


def validation_rows(greedy: pd.DataFrame, split: pd.DataFrame, source: str) -> pd.DataFrame:
    """The greedy-trace rows of the val split's instances."""
    val = greedy.merge(split.loc[split["split"] == "val", ["instance_id"]], on="instance_id")
    if val.empty:
        raise CCAError(f"{source} has no val instances: set splits.val above 0")
    return val


def load_trained_model(checkpoint, generation: GenerationConfig, device_map: str | None):
    """The model an update or LoRA trains, in float32, on the CPU or spread by the model's device_map; the
    job's first tensor_parallel_size GPUs stay free for the vLLM engine that validates it."""
    from cca.models.registry import load_model

    engine = generation.tensor_parallel_size if generation.backend == "vllm" else 0
    return load_model(checkpoint, dtype="float32", device_map=device_map, skip_gpus=engine)


def host_copy(model) -> dict:
    """The model's weights copied to the host (a w/o mask update keeps its base and best weights there)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def merged_writer(model, wrapped):
    """A ``write(dir)`` saving the model with its row deltas merged (the model is left unmerged)."""
    from cca.update.row_delta import merged

    def write(directory):
        with merged(model, wrapped or {}):
            model.save_pretrained(directory)

    return write


class Validator:
    """Validation accuracy of the model as it is now, through the generation layer.

    ``val``: the val split's greedy-trace rows (prompt ids, gold answers, and the base model's own greedy
    completions); ``workdir``: where the vLLM backend writes the weights it reloads.
    """

    def __init__(self, val: pd.DataFrame, generation: GenerationConfig, eval_dtype: str, checkpoint, model,
                 tokenizer, workdir):
        gen = generation.replace(dtype=eval_dtype)
        self.prompts = [[int(t) for t in p] for p in val["prompt_ids"]]
        self.gold = gold_answers(val)
        self.templates = list(val["template_id"])
        self.max_new_tokens = gen.max_new_tokens
        # Generated in the validation dtype with the same max_new_tokens, the greedy traces are the base
        # model's validation: no need to decode again.
        self.base_rows = val if traces_match_validation(generation, eval_dtype) else None
        self.model, self.dtype = model, gen.dtype
        if gen.backend == "hf":
            from cca.traces.generation import HFBackend

            self.backend = HFBackend(model, tokenizer, seed=0)
            self.live, self.tmp = True, None
        else:
            from cca.traces.generation import open_backend

            self.backend = open_backend(checkpoint, gen, seed=0)
            self.live = False
            outdir = Path(workdir)
            outdir.mkdir(parents=True, exist_ok=True)
            # a job of this rule killed outright (SIGKILL) left its weights here: no other job writes them
            for stale in outdir.glob(".weights.*"):
                shutil.rmtree(stale, ignore_errors=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=".weights.", dir=outdir))

    def push(self, write) -> None:
        """Make the backend generate with the model's current weights (vLLM: ``write`` them as a
        checkpoint directory, then reload it in place; Hugging Face: the live model already has them)."""
        if self.live:
            return
        write(self.tmp)
        self.backend.reload_weights(self.tmp)

    def __call__(self, write=None) -> dict:
        """Validation accuracy; ``write(dir)`` saves the weights to validate (default: the model as it is,
        which for ``write=None`` is the base model, read from the greedy traces where they match)."""
        if write is None and self.base_rows is not None:
            rows = self.base_rows
            return {**exact_match(rows["template_id"], rows["correct"]), "source": "greedy traces"}
        self.push(write or self.model.save_pretrained)
        return val_accuracy(self.backend, self.prompts, self.gold, self.templates, self.max_new_tokens)

    def close(self):
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
