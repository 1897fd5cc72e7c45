"""Settings of a task (``tasks.<name>`` in config.yaml)."""
from __future__ import annotations

from dataclasses import dataclass

from cca.settings import Settings


@dataclass(frozen=True)
class TaskConfig(Settings):
    schema_path = ("properties", "tasks", "additionalProperties")
    omitted_when_none = ("templates", "records")

    templates: str | None     # template directory of the main set (relative to the repository unless absolute)
    records: str | None       # or: a JSONL file of question/answer records (cca.tasks.records)
    set_name: str | None      # prefix of template ids (None: the directory's name)
    robustness: dict          # {set name: template directory}: harder variants, evaluated on test only
    exemplars: dict           # {file: JSONL of GSM8K-style rows, indices: the rows used as few-shot exemplars}
    header: str               # the line before the exemplars
