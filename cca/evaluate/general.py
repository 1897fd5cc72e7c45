"""General abilities through lm-evaluation-harness, fully offline, on the vendored data.

lm-eval's own task configs read hub datasets; here each benchmark is an lm-eval task config (a
dict) whose ``custom_dataset`` reads the files under ``resources/`` and keeps a fixed subsample of
questions (the same for every model, so differences are paired). Prompts and metrics follow
lm-eval's tasks of the same name:

- ``mmlu_stem``, ``mmlu_humanities``: one task per subject, 5-shot from the subject's dev split in
  order, "The following are multiple choice questions (with answers) about <subject>." then
  "question / A. .. D. / Answer:", accuracy over the letters; the benchmark's score is the mean
  over its questions (lm-eval's size-weighted group mean).
- ``arc_challenge``: "Question: ...\\nAnswer:", log-likelihood of each choice, accuracy.
- ``truthfulqa_mc1`` / ``truthfulqa_mc2``: 0-shot with the TruthfulQA QA primer; MC1 accuracy, MC2
  normalised probability mass of the true answers.
- ``triviaqa``: generation until a newline, period or comma, k-shot with canonical answers from a
  pool disjoint from the scored questions; exact match against any alias after normalisation.

``evaluate`` returns one row per scored question (benchmark, item, score) so that the table can put
a paired bootstrap interval on every difference.
"""
from __future__ import annotations

import json
import re
import string
from pathlib import Path

import numpy as np
import pandas as pd

from cca.errors import CCAError

BENCHMARKS = ("mmlu_stem", "mmlu_humanities", "arc_challenge", "truthfulqa_mc1", "truthfulqa_mc2", "triviaqa")

TRUTHFULQA_PRIMER = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)


def _subsample(n_total: int, n: int | None, seed: int) -> list[int]:
    """A fixed, sorted subsample of ``n`` indices (all when ``n`` is None or too large)."""
    if n is None or n >= n_total:
        return list(range(n_total))
    return sorted(np.random.default_rng(seed).choice(n_total, size=n, replace=False).tolist())


def _dataset(splits: dict[str, list[dict]]):
    import datasets

    return datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()})


def _jsonl(path: Path) -> list[dict]:
    # split on newlines only: str.splitlines also breaks at separators inside the JSON strings
    return [json.loads(line) for line in _require(path).read_text(encoding="utf-8").split("\n") if line.strip()]


def _require(path: Path) -> Path:
    if not path.exists():
        raise CCAError(f"general evaluation data {path} is missing: check general.data_dir in config.yaml")
    return path


# ----- MMLU -------------------------------------------------------------------------------------------

def _mmlu_rows(path: Path) -> list[dict]:
    df = pd.read_csv(path, keep_default_na=False, dtype=str)
    return [{"question": r.question, "choices": [r.choice0, r.choice1, r.choice2, r.choice3],
             "answer": int(r.answer)} for r in df.itertuples()]


def mmlu_tasks(data_dir: Path, group: str, per_subject: int | None, seed: int, num_fewshot: int = 5) -> list[dict]:
    mmlu = _require(data_dir / "mmlu")
    cats = json.loads((mmlu / "subject_categories.json").read_text())
    subjects = sorted(s for s, c in cats.items() if c["lm_eval_group"] == group)
    tasks = []
    for subject in subjects:
        test = _mmlu_rows(_require(mmlu / "test" / f"{subject}_test.csv"))
        dev = _mmlu_rows(_require(mmlu / "dev" / f"{subject}_dev.csv"))
        keep = _subsample(len(test), per_subject, seed)
        test = [{**test[i], "item": f"{subject}/{i}"} for i in keep]
        dev = [{**d, "item": f"dev/{subject}/{i}"} for i, d in enumerate(dev)]
        tasks.append({
            "task": f"cca_mmlu_{group}__{subject}",
            "custom_dataset": (lambda test=test, dev=dev, **_: _dataset({"test": test, "dev": dev})),
            "test_split": "test", "fewshot_split": "dev", "fewshot_config": {"sampler": "first_n"},
            "num_fewshot": num_fewshot, "output_type": "multiple_choice",
            "description": f"The following are multiple choice questions (with answers) about "
                           f"{subject.replace('_', ' ')}.\n\n",
            "doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\n"
                           "D. {{choices[3]}}\nAnswer:",
            "doc_to_choice": ["A", "B", "C", "D"], "doc_to_target": "answer",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1.0},
        })
    return tasks


# ----- ARC-Challenge ----------------------------------------------------------------------------------

def arc_tasks(data_dir: Path, n: int | None, seed: int) -> list[dict]:
    rows = _jsonl(data_dir / "arc_challenge" / "arc_challenge.jsonl")
    test = [{"query": rows[i]["query"], "choices": rows[i]["choices"], "gold": int(rows[i]["gold"]),
             "item": str(i)} for i in _subsample(len(rows), n, seed)]
    return [{
        "task": "cca_arc_challenge", "custom_dataset": lambda **_: _dataset({"test": test}),
        "test_split": "test", "num_fewshot": 0, "output_type": "multiple_choice",
        "doc_to_text": "{{query}}\nAnswer:", "doc_to_choice": "{{choices}}", "doc_to_target": "gold",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }]


# ----- TruthfulQA MC1 / MC2 ---------------------------------------------------------------------------

def _mc2(doc, results):
    ll = np.array([r[0] for r in results])
    probs = np.exp(ll - ll.max())
    labels = np.array(doc["mc2_labels"])
    return {"acc": float(probs[labels == 1].sum() / probs.sum())}


def truthfulqa_tasks(data_dir: Path, n: int | None, seed: int) -> list[dict]:
    path = _require(data_dir / "truthfulqa" / "v0" / "mc_task.json")
    items = json.loads(path.read_text())
    docs = []
    for i in _subsample(len(items), n, seed):
        it = items[i]
        docs.append({"question": it["question"], "item": str(i),
                     "mc1_choices": list(it["mc1_targets"]), "mc1_labels": list(it["mc1_targets"].values()),
                     "mc2_choices": list(it["mc2_targets"]), "mc2_labels": list(it["mc2_targets"].values())})
    for d in docs:
        if d["mc1_labels"].index(1) != 0:
            raise CCAError(f"{path}: item {d['item']} does not list its MC1 answer first")
    text = TRUTHFULQA_PRIMER.replace("{", "{{ '{' }}") + "\n\nQ: {{question}}\nA:"
    common = {"custom_dataset": lambda **_: _dataset({"validation": docs}), "validation_split": "validation",
              "num_fewshot": 0, "output_type": "multiple_choice", "doc_to_text": text, "doc_to_target": 0,
              "metadata": {"version": 2.0}}
    return [
        {**common, "task": "cca_truthfulqa_mc1", "doc_to_choice": "{{mc1_choices}}",
         "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]},
        {**common, "task": "cca_truthfulqa_mc2", "doc_to_choice": "{{mc2_choices}}", "process_results": _mc2,
         "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]},
    ]


# ----- TriviaQA ---------------------------------------------------------------------------------------

_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the SQuAD/TriviaQA normalisation)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _triviaqa_em(doc, results):
    pred = normalize_answer(results[0])
    return {"exact_match": float(any(pred == normalize_answer(a) for a in doc["aliases"]))}


def triviaqa_tasks(data_dir: Path, n: int | None, seed: int, num_fewshot: int = 5, pool: int = 100) -> list[dict]:
    rows = _jsonl(data_dir / "triviaqa" / "triviaqa_sm_sub.jsonl")
    # the last `pool` questions are the few-shot pool, never scored
    scored = len(rows) - pool
    test = [{"context": rows[i]["context"], "answer": rows[i]["answer"], "aliases": rows[i]["aliases"],
             "item": str(i)} for i in _subsample(scored, n, seed)]
    shots = [{"context": r["context"], "answer": r["answer"], "aliases": r["aliases"], "item": f"pool/{j}"}
             for j, r in enumerate(rows[scored:])]
    return [{
        "task": "cca_triviaqa", "custom_dataset": lambda **_: _dataset({"test": test, "train": shots}),
        "test_split": "test", "fewshot_split": "train", "fewshot_config": {"sampler": "first_n"},
        "num_fewshot": num_fewshot, "output_type": "generate_until",
        "doc_to_text": "{{context}}", "doc_to_target": "{{answer}}", "process_results": _triviaqa_em,
        "generation_kwargs": {"until": ["\n", ".", ","], "do_sample": False, "max_gen_toks": 24},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }]


# ----- running ----------------------------------------------------------------------------------------

def task_configs(data_dir: Path, questions: dict, seed: int = 0, triviaqa_shots: int = 5) -> dict[str, list[dict]]:
    """``{benchmark: [lm-eval task configs]}`` for the benchmarks named in ``questions``
    (``{benchmark: number of questions, or per subject for MMLU; null for all}``)."""
    unknown = sorted(set(questions) - set(BENCHMARKS))
    if unknown:
        raise CCAError(f"general.questions names unknown benchmarks {unknown}: use {list(BENCHMARKS)}")
    data_dir = Path(data_dir)
    out = {}
    for bench, n in questions.items():
        if bench.startswith("mmlu_"):
            out[bench] = mmlu_tasks(data_dir, bench.removeprefix("mmlu_"), n, seed)
        elif bench == "arc_challenge":
            out[bench] = arc_tasks(data_dir, n, seed)
        elif bench.startswith("truthfulqa_"):
            both = truthfulqa_tasks(data_dir, n, seed)
            out[bench] = [t for t in both if t["task"] == f"cca_{bench}"]
        elif bench == "triviaqa":
            out[bench] = triviaqa_tasks(data_dir, n, seed, num_fewshot=triviaqa_shots)
    return out


METRIC = {"triviaqa": "exact_match"}


def continuation_lm(**kwargs):
    """lm-eval's ``HFLM`` that computes logits only where lm-eval reads them.

    For a log-likelihood request lm-eval needs the log-probabilities of the continuation's tokens
    (one for a multiple-choice letter) but asks the model for logits at every position: with
    Gemma-3's 262,144-token vocabulary the output projection and the log-softmax over a five-shot
    prompt cost about as much as the transformer itself. This subclass passes ``logits_to_keep``:
    the last ``keep`` positions, where ``keep`` is the longest continuation plus the largest
    right-padding a batch can have (the spread of the input lengths; zero at batch size 1). lm-eval
    slices the continuation relative to the end of what the model returns, so the scores are the
    same as plain ``HFLM``'s (tests/test_evaluation.py holds them together). Generation is unchanged.
    """
    import torch
    from lm_eval.models.huggingface import HFLM

    class ContinuationLogitsLM(HFLM):
        _keep: int | None = None
        _spread = 0

        def _loglikelihood_tokens(self, requests, disable_tqdm=False, override_bs=None):
            # inputs as lm-eval builds them: (context + continuation), left-truncated, last token dropped
            lengths = [min(len(ctx) + len(cont), self.max_length + 1) - 1 for _, ctx, cont in requests]
            self._keep = max((len(cont) for _, _, cont in requests), default=None)
            self._spread = max(lengths) - min(lengths) if lengths else 0
            try:
                return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
            finally:
                self._keep = None

        def _model_call(self, inps, attn_mask=None, labels=None):
            if self._keep is None or attn_mask is not None or labels is not None:
                return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
            keep = self._keep + (self._spread if inps.shape[0] > 1 else 0)
            with torch.no_grad(), torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                                 enabled=self.mixed_precision_dtype is not None):
                # inps: [batch, seq]; returns [batch, min(keep, seq), vocab]
                return self.model(inps, logits_to_keep=min(keep, inps.shape[1])).logits

    return ContinuationLogitsLM(**kwargs)


def evaluate(model, tokenizer, configs: dict[str, list[dict]], batch_size: int = 8, limit: int | None = None,
             continuation_logits: bool = True) -> pd.DataFrame:
    """Score ``model`` on every task; one row per question: benchmark, item, score.

    ``continuation_logits``: compute logits only where lm-eval reads them (``continuation_lm``); False: plain
    ``HFLM`` (the same scores, slower; benchmarks/general_eval_speed.py compares them).
    """
    import logging

    from lm_eval import simple_evaluate

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    if continuation_logits:
        lm = continuation_lm(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    else:
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    flat = [(bench, cfg) for bench, cfgs in configs.items() for cfg in cfgs]
    res = simple_evaluate(model=lm, tasks=[cfg for _, cfg in flat], log_samples=True, limit=limit,
                          bootstrap_iters=0, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                          fewshot_random_seed=0)
    rows = []
    for bench, cfg in flat:
        metric = METRIC.get(bench, "acc")
        for s in res["samples"][cfg["task"]]:
            rows.append({"benchmark": bench, "item": s["doc"]["item"], "score": float(s[metric])})
    return pd.DataFrame(rows, columns=["benchmark", "item", "score"])
