"""Stage 1a: greedy traces, base accuracy and the template filter, sampled opposite traces.

Functions over tables and a generation backend (cca.traces.generation); the rule layer (cca.cli)
reads and writes the Parquet files.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import pandas as pd

from cca.errors import CCAError
from cca.traces.generation import Backend, Completion, SamplingSpec, check_lengths, sample_seed
from cca.tasks.config import TaskConfig
from cca.tasks.prompting import (LETTERS, Choice, build_prompt, extract_answer, extract_choice, gold_answer,
                                 is_correct, load_exemplars)


def prompt_texts(instances: pd.DataFrame, task: TaskConfig, root) -> list[str]:
    """Every instance's few-shot prompt: the task's header, its exemplars, the question."""
    ex = task.exemplars
    exemplars = load_exemplars(root / ex["file"] if not str(ex["file"]).startswith("/") else ex["file"],
                               ex["indices"])
    return [build_prompt(q, exemplars, task.header) for q in instances["question"]]


def tokenize_prompts(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Prompt ids with the tokenizer's own special tokens (Gemma needs its BOS)."""
    return [list(ids) for ids in tokenizer(list(texts))["input_ids"]]


def score(tokenizer, prefix_ids: Sequence[int], completion: Sequence[int], gold) -> tuple[float | None, bool]:
    """Prediction and correctness of a completion (optionally continuing ``prefix_ids`` of the trace); ``gold``
    is a number or a ``Choice`` (cca.tasks.prompting.gold_answer), whose prediction is the letter's index."""
    text = tokenizer.decode(list(prefix_ids) + list(completion), skip_special_tokens=True)
    if isinstance(gold, Choice):
        letter = extract_choice(text)
        return (float(LETTERS.index(letter)) if letter else None), letter == gold.letter
    pred = extract_answer(text)
    return pred, is_correct(pred, gold)


def generate_safely(backend: Backend, prompts: list[list[int]], names: list[str], spec: SamplingSpec
                    ) -> tuple[list[list[Completion] | None], list[str | None]]:
    """Generate for all prompts; if the batch fails, retry one by one and record each failure."""
    try:
        return backend.generate(prompts, spec), [None] * len(prompts)
    except CCAError:
        raise
    except Exception:  # noqa: BLE001 - isolate the failing instances below
        outs, errors = [], []
        for p, name in zip(prompts, names):
            try:
                outs.append(backend.generate([p], spec.for_prompt(len(outs)))[0])
                errors.append(None)
            except Exception as e:  # noqa: BLE001 - recorded per instance, not dropped
                outs.append(None)
                errors.append(f"{type(e).__name__}: {e}")
        return outs, errors


def fail_if_all_failed(errors: list, what: str) -> None:
    """Per-instance errors are recorded; a stage where every instance failed is an error of the stage."""
    if errors and all(errors):
        raise CCAError(f"{what}: generation failed for all {len(errors)} instances; first error: {errors[0]}")


def greedy_traces(backend: Backend, instances: pd.DataFrame, prompts: list[list[int]], max_new_tokens: int,
                  max_len: int) -> pd.DataFrame:
    names = list(instances["instance_id"])
    check_lengths(prompts, names, max_new_tokens, max_len)
    spec = SamplingSpec(max_new_tokens=max_new_tokens)
    outs, errors = generate_safely(backend, prompts, names, spec)
    fail_if_all_failed(errors, "greedy traces")
    rows = []
    for (_, inst), prompt, out, err in zip(instances.iterrows(), prompts, outs, errors):
        c = out[0] if out else None
        gold = gold_answer(inst["answer_value"], inst.get("answer_format"))
        pred, ok = score(backend.tokenizer, [], c.token_ids, gold) if c else (None, False)
        rows.append({
            "instance_id": inst["instance_id"], "template_id": inst["template_id"],
            "prompt_ids": prompt, "completion_ids": list(c.token_ids) if c else [],
            "completion_text": c.text if c else None, "finish_reason": c.finish_reason if c else None,
            "answer": inst["answer"], "answer_value": float(inst["answer_value"]), "prediction": pred, "correct": ok, "error": err,
        })
        if "answer_format" in instances.columns:      # a multiple-choice task's rows carry their format on
            rows[-1]["answer_format"] = inst["answer_format"]
    return pd.DataFrame(rows)


# Which splits' instances the template filter reads (template_filter.instances); None: every greedy
# trace, test and unsplit instances included (the reference code's filter).
FILTER_SPLITS = {"train": ("train",), "train+val": ("train", "val"), "all": None}


def filter_rows(greedy: pd.DataFrame, split: pd.DataFrame, instances: str) -> pd.DataFrame:
    """The greedy traces the template filter decides on: those of the seed's ``instances`` splits."""
    if instances not in FILTER_SPLITS:
        raise CCAError(f"template_filter.instances: unknown choice '{instances}' "
                       f"(one of {', '.join(FILTER_SPLITS)})")
    splits = FILTER_SPLITS[instances]
    if splits is None:
        return greedy
    ids = set(split.loc[split["split"].isin(splits), "instance_id"])
    return greedy[greedy["instance_id"].isin(ids)]


def base_accuracy(greedy: pd.DataFrame, split: pd.DataFrame, instances: str,
                  max_base_accuracy: float) -> pd.DataFrame:
    """Per-template greedy accuracy over the ``instances`` of ``split`` (``filter_rows``) and the training
    filter (accuracy < threshold). A template with no counted trace is absent, so never eligible."""
    rows = filter_rows(greedy, split, instances)
    ok = rows[rows["error"].isna()]
    acc = ok.groupby("template_id").agg(n=("correct", "size"), correct=("correct", "sum"))
    acc["accuracy"] = acc["correct"] / acc["n"]
    acc["errors"] = rows.groupby("template_id")["error"].count().reindex(acc.index).fillna(0).astype(int)
    acc["train_eligible"] = acc["accuracy"] < max_base_accuracy
    return acc.reset_index()


def opposite_traces(backend: Backend, greedy: pd.DataFrame, targets: pd.DataFrame, num_samples: int,
                    temperature: float, top_p: float, max_new_tokens: int, round_size: int = 0,
                    seed: int = 0) -> pd.DataFrame:
    """For each target instance, sample until a trace of the opposite correctness to greedy appears.

    At most ``num_samples`` samples per instance, drawn in rounds of ``round_size`` (0: all at once,
    as the reference code does). Keeping the first opposite sample of i.i.d. draws has the same
    distribution either way; rounds only stop early once one is found. Sample j of instance i is drawn
    with the seed ``sample_seed(seed, i, j)``: the traces do not depend on the sharding, the order of the
    targets or an earlier interrupted run.
    """
    g = greedy.set_index("instance_id")
    todo = [i for i in targets["instance_id"] if i in g.index and pd.isna(g.at[i, "error"])]
    state = {i: {"samples_drawn": 0, "found": False} for i in todo}
    size = round_size or num_samples
    while True:
        active = [i for i in todo if not state[i]["found"] and state[i]["samples_drawn"] < num_samples]
        if not active:
            break
        n = min(size, num_samples - min(state[i]["samples_drawn"] for i in active))
        seeds = tuple(tuple(sample_seed(seed, i, state[i]["samples_drawn"] + j) for j in range(n)) for i in active)
        spec = SamplingSpec(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, n=n, seeds=seeds)
        outs, errors = generate_safely(backend, [list(g.at[i, "prompt_ids"]) for i in active], active, spec)
        fail_if_all_failed(errors, "opposite traces")
        for i, out, err in zip(active, outs, errors):
            st = state[i]
            if err:
                st.update(error=err, samples_drawn=num_samples)
                continue
            for c in out[: num_samples - st["samples_drawn"]]:
                st["samples_drawn"] += 1
                pred, ok = score(backend.tokenizer, [], c.token_ids, _gold(g, i))
                if ok != bool(g.at[i, "correct"]):
                    st.update(found=True, opposite_ids=list(c.token_ids), opposite_text=c.text,
                              opposite_prediction=pred, opposite_correct=ok)
                    break
    rows = []
    for i in todo:
        st = state[i]
        rows.append({"instance_id": i, "template_id": g.at[i, "template_id"],
                     "greedy_correct": bool(g.at[i, "correct"]), "found": st["found"],
                     "samples_drawn": st["samples_drawn"], "opposite_ids": st.get("opposite_ids", []),
                     "opposite_text": st.get("opposite_text"), "opposite_prediction": st.get("opposite_prediction"),
                     "opposite_correct": st.get("opposite_correct"), "error": st.get("error")})
    return pd.DataFrame(rows, columns=["instance_id", "template_id", "greedy_correct", "found", "samples_drawn",
                                       "opposite_ids", "opposite_text", "opposite_prediction",
                                       "opposite_correct", "error"])


def _gold(g: pd.DataFrame, instance_id: str):
    fmt = g.at[instance_id, "answer_format"] if "answer_format" in g.columns else None
    return gold_answer(g.at[instance_id, "answer_value"], fmt)


def truncate_completion_ids(c: Completion, budget: int, tokenizer) -> Completion:
    """A greedy completion generated with a larger budget, cut to ``budget`` tokens (exact for greedy)."""
    if len(c.token_ids) <= budget:
        return c
    ids = c.token_ids[:budget]
    return replace(c, token_ids=ids, text=tokenizer.decode(list(ids), skip_special_tokens=True),
                   finish_reason="length")

