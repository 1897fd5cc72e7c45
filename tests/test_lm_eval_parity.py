"""Every general benchmark asks exactly what lm-eval's own task asks, on the same documents.

For each benchmark, lm-eval's built-in task YAML (its loader: includes and ``!function`` resolved) is built
over the vendored documents, put in the fields of the hub dataset that YAML reads, and its requests are
compared with the project's task, document by document: the same contexts (few-shot examples, their order,
delimiters), continuations and generation settings, and the same scores for the same model outputs. For
TriviaQA both draw their shots under the same few-shot seed. A future lm-eval whose task changes fails here.
"""
from pathlib import Path

import datasets
import pytest

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = {"mmlu_stem": 2, "mmlu_humanities": 2, "arc_challenge": 40, "truthfulqa_mc1": 30,
             "truthfulqa_mc2": 30, "triviaqa": 60}
FEWSHOT_SEED = 1234


def _lm_eval_yaml(relative: str) -> dict:
    import lm_eval
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(Path(lm_eval.__file__).parent / "tasks" / relative, resolve_func=True)


# the hub datasets' fields, from the project's documents (cca/evaluate/tasks/utils.py)
def _arc_hub(doc):
    labels = [chr(ord("A") + i) for i in range(len(doc["choices"]))]
    return {"question": doc["query"].removeprefix("Question: "), "choices": {"text": doc["choices"], "label": labels},
            "answerKey": labels[doc["gold"]], "item": doc["item"]}


def _truthfulqa_hub(doc):
    return {"question": doc["question"], "item": doc["item"],
            "mc1_targets": {"choices": doc["mc1_choices"], "labels": doc["mc1_labels"]},
            "mc2_targets": {"choices": doc["mc2_choices"], "labels": doc["mc2_labels"]}}


def _as_hub(ours, to_hub=None):
    return datasets.DatasetDict({split: datasets.Dataset.from_list([to_hub(d) if to_hub else dict(d) for d in ds])
                                 for split, ds in ours.dataset.items()})


def _theirs(relative: str, ours, to_hub=None):
    from lm_eval.api.task import ConfigurableTask

    cfg = _lm_eval_yaml(relative)
    cfg.pop("tag", None)
    hub = _as_hub(ours, to_hub)
    # a split the YAML names and the project has no use for (ARC's train split at 0 shots) holds the same docs
    for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
        if cfg.get(key) and cfg[key] not in hub:
            hub[cfg[key]] = next(iter(hub.values()))
    cfg["custom_dataset"] = lambda **_: hub
    return ConfigurableTask(config=cfg)


def _fake_results(task, doc, instances):
    """The same deterministic outputs for both tasks: per-choice log-likelihoods from the continuation,
    a generation from the document (an alias, in capitals with punctuation, with an article, wrong)."""
    if task.OUTPUT_TYPE == "generate_until":
        aliases = doc["answer"]["aliases"]
        return [[" " + aliases[0], aliases[-1].upper() + "!", "The " + aliases[0], "Paris Street"][len(doc["question"]) % 4]]
    return [(-(sum(map(ord, i.arguments[1])) % 97) / 7 - len(i.arguments[1]), False) for i in instances]


def _requests_and_scores(task, shots: int | None) -> list:
    if shots is not None:
        task.set_config(key="num_fewshot", value=shots)
    elif task.get_config("num_fewshot") is None:
        task.set_config(key="num_fewshot", value=0)
    task.set_fewshot_seed(seed=FEWSHOT_SEED)
    task.build_all_requests()
    by_doc = {}
    for inst in task.instances:
        by_doc.setdefault(inst.doc_id, []).append(inst)
    docs = sorted(by_doc.items())
    responses = {}
    for doc_id, insts in docs:
        insts.sort(key=lambda i: i.idx)
        responses[doc_id] = _fake_results(task, insts[0].doc, insts)
    if task.OUTPUT_TYPE == "generate_until":
        # lm-eval scores the filtered response (the YAML's filter_list) of every instance
        for doc_id, insts in docs:
            for inst, resp in zip(insts, responses[doc_id]):
                inst.resps = [resp]
        task.apply_filters()
        for doc_id, insts in docs:
            (key,) = insts[0].filtered_resps
            responses[doc_id] = [inst.filtered_resps[key] for inst in insts]
    return [{"item": insts[0].doc["item"], "requests": [(i.request_type, i.arguments) for i in insts],
             "scores": task.process_results(insts[0].doc, responses[doc_id])} for doc_id, insts in docs]


@pytest.fixture(scope="module")
def ours():
    from cca.evaluate.general import task_configs

    return task_configs(ROOT / "resources", QUESTIONS, seed=5, triviaqa_shots=5)


def _assert_same(ours_task, theirs_task, shots=None):
    mine, lm_evals = _requests_and_scores(ours_task, shots), _requests_and_scores(theirs_task, shots)
    assert len(mine) == len(lm_evals) > 0
    for a, b in zip(mine, lm_evals):
        where = f"{ours_task.config.task}, item {a['item']}: differs from lm-eval's {theirs_task.config.task}"
        assert (a["item"], a["requests"]) == (b["item"], b["requests"]), where
        # MC2's mass is computed in another order of float operations
        assert a["scores"] == pytest.approx(b["scores"], rel=1e-12, abs=1e-15), where


def test_mmlu_subjects_equal_lm_evals_mmlu_default(ours):
    for bench in ("mmlu_stem", "mmlu_humanities"):
        assert len(ours[bench]) == {"mmlu_stem": 19, "mmlu_humanities": 13}[bench]
        for task in ours[bench]:
            subject = task.config.task.split("__", 1)[1]
            # lm-eval's MMLU YAML leaves the shots to the command line; ours fixes 5 (--num_fewshot 5)
            assert task.get_config("num_fewshot") == 5
            _assert_same(task, _theirs(f"mmlu/default/mmlu_{subject}.yaml", task), shots=5)


def test_arc_challenge_equals_lm_evals_with_acc_and_acc_norm(ours):
    (task,) = ours["arc_challenge"]
    theirs = _theirs("arc/arc_challenge.yaml", task, _arc_hub)
    _assert_same(task, theirs)
    assert set(task.aggregation()) == set(theirs.aggregation()) == {"acc", "acc_norm"}


@pytest.mark.parametrize("bench", ["truthfulqa_mc1", "truthfulqa_mc2"])
def test_truthfulqa_equals_lm_evals(ours, bench):
    (task,) = ours[bench]
    _assert_same(task, _theirs(f"truthfulqa/{bench}.yaml", task, _truthfulqa_hub))


def test_triviaqa_equals_lm_evals_under_the_same_fewshot_seed(ours):
    (task,) = ours["triviaqa"]
    theirs = _theirs("triviaqa/default.yaml", task)
    _assert_same(task, theirs, shots=5)
    # the shots differ between questions (a random draw per question, not the same first five)
    contexts = {r["requests"][0][1][0].rsplit("\n\n", 1)[0] for r in _requests_and_scores(task, 5)}
    assert len(contexts) > 1


def test_evaluate_uses_lm_evals_default_seeds():
    import inspect

    from lm_eval import simple_evaluate

    from cca.evaluate.general import SEEDS

    defaults = inspect.signature(simple_evaluate).parameters
    assert SEEDS == {k: defaults[k].default for k in SEEDS}
