"""The Python pieces of the task YAMLs next to this file (``!function cca.evaluate.tasks.utils.<name>``).

The ``*_dataset`` functions are the tasks' ``custom_dataset``: lm-eval calls them with the task's
``metadata`` and ``dataset_kwargs`` as keyword arguments. The YAMLs hold only what is fixed (the
benchmark, the MMLU subject); ``cca.evaluate.general.task_configs`` passes the run's values through the
TaskManager's metadata, which lm-eval merges into every task's metadata:

- ``data_dir``: the vendored data (``resources/``),
- ``questions``: ``{benchmark: number of questions (per subject for MMLU), or None for all}``,
- ``subsample_seed``: the seed of the subsample.

Each scored document carries an ``item`` id (its index in the source file) so that scores can be paired
across models.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cca.errors import CCAError


def subsample(n_total: int, n: int | None, seed: int) -> list[int]:
    """A fixed, sorted subsample of ``n`` indices (all when ``n`` is None or too large)."""
    if n is None or n >= n_total:
        return list(range(n_total))
    return sorted(np.random.default_rng(seed).choice(n_total, size=n, replace=False).tolist())


def _dataset(splits: dict[str, list[dict]]):
    import datasets

    return datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()})


def _require(path: Path) -> Path:
    if not path.exists():
        raise CCAError(f"general evaluation data {path} is missing: check general.data_dir in config.yaml")
    return path


def _jsonl(path: Path) -> list[dict]:
    # split on newlines only: str.splitlines also breaks at separators inside the JSON strings
    return [json.loads(line) for line in _require(path).read_text(encoding="utf-8").split("\n") if line.strip()]


# ----- MMLU -------------------------------------------------------------------------------------------

def mmlu_subjects(data_dir: Path, group: str) -> list[str]:
    """The subjects of an lm-eval MMLU group (``stem``, ``humanities``) in the vendored data, sorted."""
    cats = json.loads(_require(Path(data_dir) / "mmlu" / "subject_categories.json").read_text())
    return sorted(s for s, c in cats.items() if c["lm_eval_group"] == group)


def _mmlu_rows(path: Path) -> list[dict]:
    df = pd.read_csv(path, keep_default_na=False, dtype=str)
    return [{"question": r.question, "choices": [r.choice0, r.choice1, r.choice2, r.choice3],
             "answer": int(r.answer)} for r in df.itertuples()]


def mmlu_dataset(data_dir, questions, subsample_seed, benchmark, subject, **_):
    """``test``: the subsample of the subject's questions; ``dev``: its five few-shot examples, in order."""
    mmlu = _require(Path(data_dir) / "mmlu")
    test = _mmlu_rows(_require(mmlu / "test" / f"{subject}_test.csv"))
    dev = _mmlu_rows(_require(mmlu / "dev" / f"{subject}_dev.csv"))
    keep = subsample(len(test), questions[benchmark], subsample_seed)
    return _dataset({"test": [{**test[i], "item": f"{subject}/{i}"} for i in keep],
                     "dev": [{**d, "item": f"dev/{subject}/{i}"} for i, d in enumerate(dev)]})


# ----- ARC-Challenge ----------------------------------------------------------------------------------

def arc_dataset(data_dir, questions, subsample_seed, benchmark, **_):
    rows = _jsonl(Path(data_dir) / "arc_challenge" / "arc_challenge.jsonl")
    return _dataset({"test": [{"query": rows[i]["query"], "choices": rows[i]["choices"], "gold": int(rows[i]["gold"]),
                               "item": str(i)} for i in subsample(len(rows), questions[benchmark], subsample_seed)]})


# ----- TruthfulQA MC1 / MC2 ---------------------------------------------------------------------------

def truthfulqa_dataset(data_dir, questions, subsample_seed, benchmark, **_):
    """``validation``: the subsample, with each target set split into choices and labels in file order."""
    path = _require(Path(data_dir) / "truthfulqa" / "v0" / "mc_task.json")
    items = json.loads(path.read_text())
    docs = []
    for i in subsample(len(items), questions[benchmark], subsample_seed):
        it = items[i]
        docs.append({"question": it["question"], "item": str(i),
                     "mc1_choices": list(it["mc1_targets"]), "mc1_labels": list(it["mc1_targets"].values()),
                     "mc2_choices": list(it["mc2_targets"]), "mc2_labels": list(it["mc2_targets"].values())})
    # the MC1 YAML's target is choice 0
    for d in docs:
        if d["mc1_labels"].index(1) != 0:
            raise CCAError(f"{path}: item {d['item']} does not list its MC1 answer first")
    return _dataset({"validation": docs})


def truthfulqa_mc2(doc, results):
    """MC2: the normalised probability mass of the true answers."""
    ll = np.array([r[0] for r in results])
    probs = np.exp(ll - ll.max())
    labels = np.array(doc["mc2_labels"])
    return {"acc": float(probs[labels == 1].sum() / probs.sum())}


# ----- TriviaQA ---------------------------------------------------------------------------------------

TRIVIAQA_POOL = 100   # the last questions of the file: the few-shot pool, never scored


def _triviaqa_doc(row: dict, item: str) -> dict:
    """A vendored line in the fields of the hub's rc.nocontext split that lm-eval's task reads: the question
    (the file's context is "Question: <question>\nAnswer:") and answer.aliases / answer.value."""
    question = row["context"].removeprefix("Question: ").removesuffix("\nAnswer:")
    return {"question": question, "answer": {"aliases": list(row["aliases"]), "value": row["answer"]}, "item": item}


def triviaqa_dataset(data_dir, questions, subsample_seed, benchmark, **_):
    """``validation``: the subsample of the scored questions; ``train``: the few-shot pool."""
    path = Path(data_dir) / "triviaqa" / "triviaqa_sm_sub.jsonl"
    rows = _jsonl(path)
    for n, row in enumerate(rows, 1):
        if not (row["context"].startswith("Question: ") and row["context"].endswith("\nAnswer:")) or not row["aliases"]:
            raise CCAError(f"{path} line {n}: expected a context \"Question: ...\\nAnswer:\" and at least one alias")
    scored = len(rows) - TRIVIAQA_POOL
    return _dataset({"validation": [_triviaqa_doc(rows[i], str(i))
                                    for i in subsample(scored, questions[benchmark], subsample_seed)],
                     "train": [_triviaqa_doc(r, f"pool/{j}") for j, r in enumerate(rows[scored:])]})
