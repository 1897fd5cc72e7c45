"""General abilities through lm-evaluation-harness, fully offline, on the vendored data.

Each benchmark is a set of lm-eval task YAMLs under ``cca/evaluate/tasks/`` (their Python pieces in
``cca/evaluate/tasks/utils.py``), loaded through lm-eval's ``TaskManager(include_path=...)``. A task's
``custom_dataset`` reads the files under ``resources/`` and keeps a fixed subsample of questions (the same
for every model, so differences are paired). Prompts and metrics follow lm-eval's tasks of the same name:

- ``mmlu_stem``, ``mmlu_humanities``: one task per subject (tagged with the benchmark), 5-shot from the
  subject's dev split in order, "The following are multiple choice questions (with answers) about
  <subject>." then "question / A. .. D. / Answer:", accuracy over the letters; the benchmark's score is
  the mean over its questions (lm-eval's size-weighted group mean).
- ``arc_challenge``: "Question: ...\\nAnswer:", log-likelihood of each choice; two scores per question,
  ``arc_challenge`` (acc) and ``arc_challenge_acc_norm`` (acc_norm: log-likelihood per character of the choice).
- ``truthfulqa_mc1`` / ``truthfulqa_mc2``: 0-shot with the TruthfulQA QA primer; MC1 accuracy, MC2
  normalised probability mass of the true answers.
- ``triviaqa``: lm-eval's ``triviaqa`` task ("Question: {question}?\\nAnswer:", k shots drawn at random per
  question from a pool disjoint from the scored questions with their first alias as answer, generation until a
  newline, period or comma, exact match against any alias ignoring case and punctuation).

``tests/test_lm_eval_parity.py`` builds every benchmark's requests from lm-eval's own YAML over the same
documents and requires them to equal these tasks' requests.

``evaluate`` returns one row per scored question (benchmark, item, score) so that the table can put
a paired bootstrap interval on every difference.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from cca.errors import CCAError
from cca.evaluate.tasks.utils import mmlu_subjects
from cca.evaluate.tasks.utils import truthfulqa_mc2 as _mc2  # noqa: F401

BENCHMARKS = ("mmlu_stem", "mmlu_humanities", "arc_challenge", "truthfulqa_mc1", "truthfulqa_mc2", "triviaqa")

TASKS_DIR = Path(__file__).with_name("tasks")


def _quiet_lm_eval() -> None:
    import logging

    logging.getLogger("lm_eval").setLevel(logging.ERROR)


def task_manager(metadata: dict | None = None):
    """lm-eval's ``TaskManager`` over the YAMLs under ``TASKS_DIR`` only (none of lm-eval's own tasks);
    ``metadata`` is merged into every task's metadata."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)


def task_configs(data_dir: Path, questions: dict, seed: int = 0, triviaqa_shots: int = 5) -> dict[str, list]:
    """``{benchmark: [lm-eval tasks]}`` for the benchmarks named in ``questions``
    (``{benchmark: number of questions, or per subject for MMLU; null for all}``).

    A benchmark is the task, or for MMLU the tag of the subjects' tasks, named ``cca_<benchmark>`` in the
    YAMLs; the tasks are built (their data read and subsampled) here, and ``evaluate`` may run them more than
    once (lm-eval rebuilds a task's requests on every run).
    """
    unknown = sorted(set(questions) - set(BENCHMARKS))
    if unknown:
        raise CCAError(f"general.questions names unknown benchmarks {unknown}: use {list(BENCHMARKS)}")
    data_dir = Path(data_dir)
    _quiet_lm_eval()
    # the tasks' dataset functions read these from their metadata (cca/evaluate/tasks/utils.py)
    manager = task_manager({"data_dir": str(data_dir), "questions": dict(questions), "subsample_seed": seed})
    out = {}
    for bench in questions:
        name = f"cca_{bench}"
        if bench.startswith("mmlu_"):
            # the YAMLs name the subjects; the vendored data must have the same ones in the group
            in_yaml = sorted(t.split("__", 1)[1] for t in manager.task_index[name].tags)
            in_data = mmlu_subjects(data_dir, bench.removeprefix("mmlu_"))
            if in_yaml != in_data:
                raise CCAError(f"{bench}: the subjects in {data_dir / 'mmlu'} {in_data} differ from the task YAMLs "
                               f"under {TASKS_DIR / 'mmlu'} {in_yaml}")
        tasks = list(manager.load(name)["tasks"].values())
        if bench == "triviaqa":
            for task in tasks:
                task.set_config(key="num_fewshot", value=triviaqa_shots)
        out[bench] = tasks
    return out


# the scores a benchmark's questions get: (label in the table, lm-eval metric); others: (benchmark, "acc")
SCORES = {"triviaqa": [("triviaqa", "exact_match")],
          "arc_challenge": [("arc_challenge", "acc"), ("arc_challenge_acc_norm", "acc_norm")]}

# lm-eval's own defaults for simple_evaluate's seeds (its CLI's --seed 0,1234,1234,1234): the TriviaQA shots
# are drawn with the few-shot seed, so they are the ones an lm-eval user gets
SEEDS = {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234, "fewshot_random_seed": 1234}


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


def evaluate(model, tokenizer, configs: dict[str, list], batch_size: int = 8, limit: int | None = None,
             continuation_logits: bool = True) -> pd.DataFrame:
    """Score ``model`` on every task of ``configs`` (``task_configs``); one row per question: benchmark, item, score.

    ``continuation_logits``: compute logits only where lm-eval reads them (``continuation_lm``); False: plain
    ``HFLM`` (the same scores, slower; benchmarks/general_eval_speed.py compares them).
    """
    from lm_eval import simple_evaluate

    _quiet_lm_eval()
    if continuation_logits:
        lm = continuation_lm(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    else:
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    flat = [(bench, task) for bench, tasks in configs.items() for task in tasks]
    res = simple_evaluate(model=lm, tasks=[task for _, task in flat], task_manager=task_manager(),
                          log_samples=True, limit=limit, bootstrap_iters=0, **SEEDS)
    rows = []
    for bench, task in flat:
        for label, metric in SCORES.get(bench, [(bench, "acc")]):
            for s in res["samples"][task.task_name]:
                rows.append({"benchmark": label, "item": s["doc"]["item"], "score": float(s[metric])})
    return pd.DataFrame(rows, columns=["benchmark", "item", "score"])
