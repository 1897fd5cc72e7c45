"""Settings of the general-ability evaluation (``general`` of a profile)."""
from __future__ import annotations

from dataclasses import dataclass

from cca.settings import Settings


@dataclass(frozen=True)
class GeneralConfig(Settings):
    schema_path = ("$defs", "profile", "properties", "general")

    questions: dict                 # {benchmark: questions scored (MMLU: per subject); None: all}
    data_dir: str                   # folder holding mmlu/, arc_challenge/, truthfulqa/, triviaqa/
    seeds: list | None              # seeds whose models are evaluated (None: the first seed)
    configurations: list | None     # configurations evaluated (None: all; the original always)
    subsample_seed: int
    triviaqa_shots: int
    batch_size: int
    bootstrap_iters: int | None     # paired bootstrap draws of the table's intervals (None: not the concern
    #                                 of an evaluation job)
